#!/usr/bin/python3
# plfs: a FUSE file system that loses power. It keeps the whole tree in memory in two versions
# per file: what processes see (the page cache) and what a disk would hold. A write is volatile
# until an fsync/fdatasync of its file covers it; a create, rename, unlink, mkdir or rmdir is
# volatile until an fsync of the directory it changed. Writing "poweroff" to /.plfs-control cuts
# the power: a random subset of the volatile page writes and size changes reaches the "disk" (as a
# kernel flushing dirty pages in any order leaves it), a random subset of the volatile directory
# changes is replayed in order, everything else is dropped, the survived tree is written to the
# backing directory, and from then on every operation fails with EIO until the harness unmounts.
# Mounted again on that backing directory, the members restart on what survived.
#
# Usage: /usr/bin/python3 plfs.py BACKING_DIR MOUNTPOINT SEED
# Prints "ready" on stdout once mounted; prints one JSON line per power cut with what was kept.
#
# The kernel page cache stays on (no direct_io), so LMDB's read-only mmap of its data file works;
# writes still come through here one by one (write-through, no writeback cache), so nothing is
# buffered in the kernel that this model does not know about.

import errno
import json
import os
import random
import stat
import sys
import threading
import time

import fusepy

PAGE = 4096
CONTROL = '/.plfs-control'
# A write to a page that is already dirty first lets the previous content reach the disk with
# this probability: the kernel may have written the page back between the two writes, so a cut
# can leave any intermediate version on disk, not only the first or the last.
WRITEBACK_BETWEEN_WRITES = 0.125


class Inode:
    __slots__ = ('ino', 'mode', 'pages', 'size', 'disk_pages', 'disk_size', 'dirty', 'size_dirty',
                 'entries', 'nlink', 'mtime', 'symlink')

    def __init__(self, ino, mode):
        self.ino = ino
        self.mode = mode
        self.pages = {}        # page number -> bytes (what processes see)
        self.size = 0
        self.disk_pages = {}   # what is on "disk"
        self.disk_size = 0
        self.dirty = set()     # pages written since the last fsync of this file
        self.size_dirty = False
        self.entries = {} if stat.S_ISDIR(mode) else None  # name -> Inode (what processes see)
        self.nlink = 2 if stat.S_ISDIR(mode) else 1
        self.mtime = time.time()
        self.symlink = None

    def is_dir(self):
        return self.entries is not None


class PowerLossFs(fusepy.Operations):
    use_ns = True

    def __init__(self, backing, seed):
        self.backing = backing
        self.rng = random.Random(seed)
        self.mutex = threading.RLock()
        self.next_ino = 1
        self.off = False
        self.root = self.new_inode(stat.S_IFDIR | 0o755)
        # Directory changes since mount, in order: (op, args, durable). Replayed on power off
        # against the namespace at mount (disk_entries), durable ones always, others by chance.
        self.journal = []
        self.load(backing, self.root)
        self.snapshot_disk_namespace()

    # ---- bookkeeping ---------------------------------------------------------------------------

    def new_inode(self, mode):
        inode = Inode(self.next_ino, mode)
        self.next_ino += 1
        return inode

    def load(self, path, dir_inode):
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                child = self.new_inode(stat.S_IFDIR | stat.S_IMODE(st.st_mode))
                self.load(full, child)
            elif stat.S_ISREG(st.st_mode):
                child = self.new_inode(stat.S_IFREG | stat.S_IMODE(st.st_mode))
                with open(full, 'rb') as f:
                    page_no = 0
                    while True:
                        chunk = f.read(PAGE)
                        if not chunk:
                            break
                        if chunk.count(0) != len(chunk):
                            child.pages[page_no] = chunk.ljust(PAGE, b'\0')
                        page_no += 1
                child.size = st.st_size
                child.disk_pages = dict(child.pages)
                child.disk_size = child.size
            else:
                continue
            dir_inode.entries[name] = child
            if child.is_dir():
                dir_inode.nlink += 1

    def snapshot_disk_namespace(self):
        # The namespace on "disk" at mount: inode -> {name: inode}, for every directory.
        self.disk_entries = {}
        stack = [self.root]
        while stack:
            d = stack.pop()
            self.disk_entries[d] = dict(d.entries)
            stack.extend(c for c in d.entries.values() if c.is_dir())

    def lookup(self, path):
        inode = self.root
        for part in path.split('/'):
            if not part:
                continue
            if not inode.is_dir():
                raise fusepy.FuseOSError(errno.ENOTDIR)
            inode = inode.entries.get(part)
            if inode is None:
                raise fusepy.FuseOSError(errno.ENOENT)
        return inode

    def parent(self, path):
        head, name = os.path.split(path.rstrip('/'))
        d = self.lookup(head or '/')
        if not d.is_dir():
            raise fusepy.FuseOSError(errno.ENOTDIR)
        return d, name

    def check_on(self):
        if self.off:
            raise fusepy.FuseOSError(errno.EIO)

    def log_dir_op(self, op, *args):
        self.journal.append([op, args, False])

    # ---- power off ------------------------------------------------------------------------------

    def power_off(self):
        rng = self.rng
        kept_pages = dropped_pages = 0
        # Directory changes: durable ones, and each volatile one with probability 1/2, in order.
        ns = {d: dict(e) for d, e in self.disk_entries.items()}
        kept_ops = dropped_ops = 0
        for op, args, durable in self.journal:
            if not durable and rng.random() < 0.5:
                dropped_ops += 1
                continue
            kept_ops += 1
            if op == 'link':
                d, name, child = args
                ns.setdefault(d, {})[name] = child
                if child.is_dir():
                    ns.setdefault(child, {})
            elif op == 'unlink':
                d, name = args
                ns.setdefault(d, {}).pop(name, None)
            elif op == 'rename':
                src, sname, dst, dname, child = args
                if ns.setdefault(src, {}).get(sname) is child:
                    del ns[src][sname]
                    ns.setdefault(dst, {})[dname] = child
        # File contents: each dirty page and each size change reaches the disk with probability 1/2.
        seen = set()
        stack = [self.root]
        inodes = []
        while stack:
            d = stack.pop()
            for child in ns.get(d, {}).values():
                if child.ino in seen:
                    continue
                seen.add(child.ino)
                inodes.append(child)
                if child.is_dir():
                    stack.append(child)
        for inode in inodes:
            if inode.is_dir():
                continue
            for page_no in sorted(inode.dirty):
                if rng.random() < 0.5:
                    kept_pages += 1
                    data = inode.pages.get(page_no)
                    if data is None:
                        inode.disk_pages.pop(page_no, None)
                    else:
                        inode.disk_pages[page_no] = data
                else:
                    dropped_pages += 1
            if inode.size_dirty and rng.random() < 0.5:
                inode.disk_size = inode.size
        self.write_backing(ns)
        self.off = True
        print(json.dumps({'poweroff': True, 'keptPages': kept_pages, 'droppedPages': dropped_pages,
                          'keptDirOps': kept_ops, 'droppedDirOps': dropped_ops}), flush=True)

    def write_backing(self, ns):
        tmp = self.backing.rstrip('/') + '.plfs-new'
        if os.path.exists(tmp):
            remove_tree(tmp)
        os.mkdir(tmp)

        def write_dir(d, path):
            for name, child in ns.get(d, {}).items():
                full = os.path.join(path, name)
                if child.is_dir():
                    os.mkdir(full, stat.S_IMODE(child.mode))
                    write_dir(child, full)
                else:
                    with open(full, 'wb') as f:
                        for page_no, data in child.disk_pages.items():
                            if page_no * PAGE < child.disk_size:
                                f.seek(page_no * PAGE)
                                f.write(data[:max(0, min(PAGE, child.disk_size - page_no * PAGE))])
                        f.truncate(child.disk_size)
                    os.chmod(full, stat.S_IMODE(child.mode))

        write_dir(self.root, tmp)
        old = self.backing.rstrip('/') + '.plfs-old'
        os.rename(self.backing, old)
        os.rename(tmp, self.backing)
        remove_tree(old)

    # ---- FUSE operations -----------------------------------------------------------------------

    def getattr(self, path, fh=None):
        with self.mutex:
            if path == CONTROL:
                return {'st_mode': stat.S_IFREG | 0o600, 'st_nlink': 1, 'st_size': 0}
            self.check_on()
            inode = self.lookup(path)
            ns = int(inode.mtime * 1e9)
            if inode.symlink is not None:
                size = len(inode.symlink)
            elif inode.is_dir():
                size = 4096
            else:
                size = inode.size
            return {'st_mode': inode.mode, 'st_nlink': inode.nlink, 'st_size': size,
                    'st_ino': inode.ino, 'st_uid': os.getuid(), 'st_gid': os.getgid(),
                    'st_atime': ns, 'st_mtime': ns, 'st_ctime': ns,
                    'st_blocks': (size + 511) // 512, 'st_blksize': PAGE}

    def readdir(self, path, fh):
        with self.mutex:
            self.check_on()
            inode = self.lookup(path)
            return ['.', '..'] + list(inode.entries.keys())

    def statfs(self, path):
        return {'f_bsize': PAGE, 'f_frsize': PAGE, 'f_blocks': 1 << 24, 'f_bfree': 1 << 23,
                'f_bavail': 1 << 23, 'f_files': 1 << 20, 'f_ffree': 1 << 19, 'f_namemax': 255}

    def access(self, path, amode):
        with self.mutex:
            if path == CONTROL:
                return 0
            self.check_on()
            self.lookup(path)
            return 0

    def mkdir(self, path, mode):
        with self.mutex:
            self.check_on()
            d, name = self.parent(path)
            if name in d.entries:
                raise fusepy.FuseOSError(errno.EEXIST)
            child = self.new_inode(stat.S_IFDIR | (mode & 0o7777))
            d.entries[name] = child
            d.nlink += 1
            self.log_dir_op('link', d, name, child)

    def rmdir(self, path):
        with self.mutex:
            self.check_on()
            d, name = self.parent(path)
            child = d.entries.get(name)
            if child is None:
                raise fusepy.FuseOSError(errno.ENOENT)
            if not child.is_dir():
                raise fusepy.FuseOSError(errno.ENOTDIR)
            if child.entries:
                raise fusepy.FuseOSError(errno.ENOTEMPTY)
            del d.entries[name]
            d.nlink -= 1
            self.log_dir_op('unlink', d, name)

    def create(self, path, mode, fi=None):
        with self.mutex:
            self.check_on()
            d, name = self.parent(path)
            if name not in d.entries:
                child = self.new_inode(stat.S_IFREG | (mode & 0o7777))
                d.entries[name] = child
                self.log_dir_op('link', d, name, child)
            return 0

    def open(self, path, flags):
        with self.mutex:
            if path == CONTROL:
                return 0
            self.check_on()
            inode = self.lookup(path)
            if flags & os.O_TRUNC:
                self.set_size(inode, 0)
            return 0

    def opendir(self, path):
        with self.mutex:
            self.check_on()
            self.lookup(path)
            return 0

    def unlink(self, path):
        with self.mutex:
            self.check_on()
            d, name = self.parent(path)
            child = d.entries.get(name)
            if child is None:
                raise fusepy.FuseOSError(errno.ENOENT)
            if child.is_dir():
                raise fusepy.FuseOSError(errno.EISDIR)
            del d.entries[name]
            child.nlink -= 1
            self.log_dir_op('unlink', d, name)

    def rename(self, old, new):
        with self.mutex:
            self.check_on()
            src, sname = self.parent(old)
            dst, dname = self.parent(new)
            child = src.entries.get(sname)
            if child is None:
                raise fusepy.FuseOSError(errno.ENOENT)
            target = dst.entries.get(dname)
            if target is not None and target.is_dir():
                if not child.is_dir():
                    raise fusepy.FuseOSError(errno.EISDIR)
                if target.entries:
                    raise fusepy.FuseOSError(errno.ENOTEMPTY)
            del src.entries[sname]
            dst.entries[dname] = child
            if child.is_dir() and src is not dst:
                src.nlink -= 1
                dst.nlink += 1
            self.log_dir_op('rename', src, sname, dst, dname, child)

    def symlink(self, target, source):
        with self.mutex:
            self.check_on()
            d, name = self.parent(target)
            child = self.new_inode(stat.S_IFLNK | 0o777)
            child.symlink = source
            d.entries[name] = child
            self.log_dir_op('link', d, name, child)

    def readlink(self, path):
        with self.mutex:
            self.check_on()
            inode = self.lookup(path)
            if inode.symlink is None:
                raise fusepy.FuseOSError(errno.EINVAL)
            return inode.symlink

    def chmod(self, path, mode):
        with self.mutex:
            self.check_on()
            inode = self.lookup(path)
            inode.mode = (inode.mode & ~0o7777) | (mode & 0o7777)

    def chown(self, path, uid, gid):
        return 0

    def utimens(self, path, times=None):
        with self.mutex:
            self.check_on()
            self.lookup(path).mtime = time.time()

    def set_size(self, inode, length):
        if length < inode.size:
            last = length // PAGE
            for page_no in [p for p in inode.pages if p >= last]:
                if p_beyond(page_no, length):
                    del inode.pages[page_no]
                    inode.dirty.add(page_no)
            partial = length % PAGE
            if partial and last in inode.pages:
                inode.pages[last] = inode.pages[last][:partial].ljust(PAGE, b'\0')
                inode.dirty.add(last)
        inode.size = length
        inode.size_dirty = True
        inode.mtime = time.time()

    def truncate(self, path, length, fh=None):
        with self.mutex:
            if path == CONTROL:
                return 0
            self.check_on()
            inode = self.lookup(path)
            if inode.is_dir():
                raise fusepy.FuseOSError(errno.EISDIR)
            self.set_size(inode, length)

    def read(self, path, size, offset, fh):
        with self.mutex:
            self.check_on()
            inode = self.lookup(path)
            end = min(offset + size, inode.size)
            if end <= offset:
                return b''
            out = bytearray()
            pos = offset
            while pos < end:
                page_no, within = divmod(pos, PAGE)
                n = min(PAGE - within, end - pos)
                data = inode.pages.get(page_no)
                out += data[within:within + n] if data is not None else bytes(n)
                pos += n
            return bytes(out)

    def write(self, path, data, offset, fh):
        with self.mutex:
            if path == CONTROL:
                command = data.decode().strip()
                if command == 'poweroff' and not self.off:
                    self.power_off()
                return len(data)
            self.check_on()
            inode = self.lookup(path)
            pos = offset
            done = 0
            while done < len(data):
                page_no, within = divmod(pos, PAGE)
                n = min(PAGE - within, len(data) - done)
                old = inode.pages.get(page_no)
                if page_no in inode.dirty and self.rng.random() < WRITEBACK_BETWEEN_WRITES:
                    if old is None:
                        inode.disk_pages.pop(page_no, None)
                    else:
                        inode.disk_pages[page_no] = old
                page = bytearray(old) if old is not None else bytearray(PAGE)
                page[within:within + n] = data[done:done + n]
                inode.pages[page_no] = bytes(page)
                inode.dirty.add(page_no)
                pos += n
                done += n
            if pos > inode.size:
                inode.size = pos
                inode.size_dirty = True
            inode.mtime = time.time()
            return len(data)

    def fsync(self, path, datasync, fh):
        with self.mutex:
            if path == CONTROL:
                return 0
            self.check_on()
            inode = self.lookup(path)
            for page_no in inode.dirty:
                data = inode.pages.get(page_no)
                if data is None:
                    inode.disk_pages.pop(page_no, None)
                else:
                    inode.disk_pages[page_no] = data
            inode.dirty.clear()
            inode.disk_size = inode.size
            inode.size_dirty = False
            return 0

    def fsyncdir(self, path, datasync, fh):
        with self.mutex:
            self.check_on()
            d = self.lookup(path)
            for entry in self.journal:
                op, args = entry[0], entry[1]
                if args[0] is d or (op == 'rename' and args[2] is d):
                    entry[2] = True
            return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0

    def releasedir(self, path, fh):
        return 0


def p_beyond(page_no, length):
    return page_no * PAGE >= length


def remove_tree(path):
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            os.rmdir(os.path.join(root, name))
    os.rmdir(path)


class Ready(PowerLossFs):
    def init(self, path):
        print('ready', flush=True)


def main():
    backing, mountpoint, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fs = Ready(backing, seed)
    fusepy.FUSE(fs, mountpoint, foreground=True, nothreads=False, fsname='plfs', default_permissions=False)


if __name__ == '__main__':
    main()
