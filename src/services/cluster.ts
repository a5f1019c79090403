// etcd's Cluster service on a member: the member list, and membership changes proposed as conf
// changes (add, remove, promote) or entries (update); and this member's publish of its name and
// client URLs, as etcd does on start.

import type { ConcordNode } from '../node/node.js';
import type { NodeId } from '../raft/types.js';
import type { GroupReplica } from '../replica/group-replica.js';
import { memberIdFor, memberIdNamed, publicId } from '../replica/ids.js';
import { encodeMemberChange, type MemberChangeContext, type MemberInfo } from '../replica/members.js';
import { EtcdError } from '../wire/etcd-errors.js';
import type { Member, WithHeader } from './backend.js';

/**
 * How often a member that has not published its name and client URLs yet tries again (one
 * proposal in flight at a time). Short: a starting member serves clients only once published.
 */
export const PUBLISH_RETRY_MS = 100;

export class ClusterService {
  private readonly replica: GroupReplica;
  private publishInFlight = false;

  constructor(private readonly node: ConcordNode) {
    this.replica = node.replica;
  }

  /** The member (current, learner or not) an ID from a request names, in either of its forms. */
  private memberNamed(id: bigint): number | undefined {
    return memberIdNamed(
      id,
      this.replica.members.list().map((m) => m.id),
    );
  }

  private toMember(info: MemberInfo): Member {
    return {
      id: publicId(info.id),
      name: info.name,
      peerUrls: info.peerUrls,
      clientUrls: info.clientUrls,
      isLearner: info.isLearner,
    };
  }

  private memberInfos(): Member[] {
    return this.replica.members.list().map((m) => this.toMember(m));
  }

  /**
   * Announces this member's name and client URLs through Raft, once, as etcd does on start. A
   * member restarted with the attributes its applied membership already holds counts as
   * published at once and serves without a quorum (etcd publishes again on every start).
   */
  async publishIfNeeded(): Promise<void> {
    if (this.replica.published || this.publishInFlight || this.node.isStopped) return;
    const current = this.replica.members.get(this.replica.memberId);
    if (current === undefined) return;
    if (
      current.name === this.node.config.name &&
      sameUrls(current.clientUrls, this.node.config.advertiseClientUrls)
    ) {
      this.replica.markPublished();
      return;
    }
    if (this.replica.leaderId === 0) return;
    this.publishInFlight = true;
    try {
      await this.replica.propose({
        type: 'publishMember',
        memberId: this.replica.memberId,
        name: this.node.config.name,
        clientUrls: this.node.config.advertiseClientUrls,
      });
    } catch {
      // retried by the timer
    } finally {
      this.publishInFlight = false;
    }
  }

  async memberList(linearizable: boolean): Promise<WithHeader<{ members: Member[] }>> {
    if (linearizable) await this.replica.linearizableBarrier();
    return { members: this.memberInfos(), header: this.replica.header() };
  }

  async memberAdd(
    peerUrls: string[],
    isLearner: boolean,
  ): Promise<WithHeader<{ member: Member; members: Member[] }>> {
    this.replica.assertServing();
    if (this.replica.members.peerUrlsInUse(peerUrls)) throw new EtcdError('peerUrlExist');
    // The time makes the ID new even for peer URLs a removed member used (etcd does the same).
    const id = memberIdFor(peerUrls, this.node.config.initialClusterToken, Date.now());
    if (this.replica.members.has(id) || this.replica.members.isRemoved(id))
      throw new EtcdError('memberExist');
    if (!isLearner) this.checkQuorumAfterAdd();
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id,
      name: '',
      peerUrls,
      isLearner,
      clusterId: this.replica.members.clusterId,
      proposer: this.replica.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: isLearner ? 'add-learner' : 'add-node', nodeId: id }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    const member = this.replica.members.get(id);
    if (member === undefined) throw new EtcdError('memberNotFound');
    return { member: this.toMember(member), members: this.memberInfos(), header: this.replica.header() };
  }

  async memberRemove(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.replica.assertServing();
    const memberId = memberIdNamed(id, [
      ...this.replica.members.list().map((m) => m.id),
      ...this.replica.members.removed(),
    ]);
    if (memberId === undefined) throw new EtcdError('memberNotFound');
    if (this.replica.members.isRemoved(memberId)) throw new EtcdError('idRemoved');
    const member = this.replica.members.get(memberId);
    if (member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) this.checkQuorumAfterRemove(memberId);
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: member.isLearner,
      clusterId: this.replica.members.clusterId,
      proposer: this.replica.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: 'remove-node', nodeId: memberId }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    return { members: this.memberInfos(), header: this.replica.header() };
  }

  async memberUpdate(id: bigint, peerUrls: string[]): Promise<WithHeader<{ members: Member[] }>> {
    const memberId = this.memberNamed(id);
    if (memberId === undefined) throw new EtcdError('memberNotFound');
    if (this.replica.members.peerUrlsInUse(peerUrls, memberId)) throw new EtcdError('peerUrlExist');
    const outcome = await this.replica.propose({ type: 'updateMember', memberId, peerUrls });
    if (outcome.status === 'error') throw outcome.error;
    return { members: this.memberInfos(), header: this.replica.header() };
  }

  async memberPromote(id: bigint): Promise<WithHeader<{ members: Member[] }>> {
    this.replica.assertServing();
    const memberId = this.memberNamed(id);
    const member = memberId === undefined ? undefined : this.replica.members.get(memberId);
    if (memberId === undefined || member === undefined) throw new EtcdError('memberNotFound');
    if (!member.isLearner) throw new EtcdError('memberNotLearner');
    if (!this.replica.isLeader) {
      await this.node.forwardToLeader((url) => this.node.leaderClient.memberPromote(url, id));
      return { members: this.memberInfos(), header: this.replica.header() };
    }
    // etcd promotes only a learner whose log is within 10% of the leader's.
    const progress = this.replica.status().progress;
    const learner = progress?.get(memberId);
    const leader = progress?.get(this.replica.memberId);
    if (learner === undefined || leader === undefined || learner.match < leader.match * 0.9) {
      throw new EtcdError('learnerNotReady');
    }
    const requestId = this.replica.newRequestId();
    const context: MemberChangeContext = {
      id: memberId,
      name: member.name,
      peerUrls: member.peerUrls,
      isLearner: false,
      clusterId: this.replica.members.clusterId,
      proposer: this.replica.memberId,
      requestId,
    };
    await this.replica.proposeConfChange(
      {
        transition: 'auto',
        changes: [{ type: 'add-node', nodeId: memberId }],
        context: encodeMemberChange(context),
      },
      requestId,
    );
    return { members: this.memberInfos(), header: this.replica.header() };
  }

  /** etcd's strict reconfiguration check: the new voter set must still have a started quorum. */
  private checkQuorumAfterAdd(): void {
    const voters = this.replica.voters.length + 1;
    if (this.activeVoters() < Math.floor(voters / 2) + 1) throw new EtcdError('memberNotEnoughStarted');
  }

  private checkQuorumAfterRemove(removed: number): void {
    const voters = this.replica.voters.filter((v) => v !== removed);
    const active = this.activeVoters(removed);
    if (voters.length > 0 && active < Math.floor(voters.length / 2) + 1) {
      throw new EtcdError('memberNotEnoughStarted');
    }
  }

  private activeVoters(excluding?: NodeId): number {
    const progress = this.replica.status().progress;
    if (progress === undefined) return this.replica.voters.filter((v) => v !== excluding).length;
    let active = 0;
    for (const voter of this.replica.voters) {
      if (voter === excluding) continue;
      if (voter === this.replica.memberId || progress.get(voter)?.recentActive) active++;
    }
    return active;
  }
}

function sameUrls(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((url, i) => url === b[i]);
}
