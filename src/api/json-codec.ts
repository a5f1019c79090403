// Protobuf <-> JSON the way etcd's grpc-gateway renders it (jsonpb with original field names,
// defaults omitted): bytes as base64, 64-bit integers as decimal strings, enums by name.
// Input accepts both snake_case and lowerCamelCase names, as jsonpb does.

import type * as protoLoader from '@grpc/proto-loader';
import { etcdPackageDefinition } from '../wire/etcd-proto.js';

interface FieldDescriptor {
  name: string;
  type: string;
  typeName: string;
  label: string;
}

interface MessageDescriptor {
  field: FieldDescriptor[];
  enumType: Array<{ name: string } & EnumDescriptor>;
}

export class JsonDecodeError extends Error {
  readonly code = 'json-decode';
  constructor(message: string) {
    super(message);
    this.name = 'JsonDecodeError';
  }
}

const int64Types = new Set(['TYPE_INT64', 'TYPE_UINT64', 'TYPE_SINT64', 'TYPE_FIXED64', 'TYPE_SFIXED64']);
const nestingDepthMax = 32;

function packageOf(fullName: string): string {
  return fullName.slice(0, Math.max(0, fullName.lastIndexOf('.')));
}

/** Resolves a field's type name the way protobuf scoping does for our (non-nested) messages. */
function resolveMessage(
  typeName: string,
  scope: string,
): { fullName: string; descriptor: MessageDescriptor } {
  const definitions = etcdPackageDefinition();
  for (const candidate of [`${scope}.${typeName}`, typeName]) {
    const definition = definitions[candidate] as
      | protoLoader.MessageTypeDefinition<object, object>
      | undefined;
    if (definition !== undefined && 'type' in definition) {
      return { fullName: candidate, descriptor: definition.type as unknown as MessageDescriptor };
    }
  }
  throw new Error(`unknown message type ${typeName} in ${scope}`);
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function isDefault(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === '' || value === 0) return true;
  if (value === '0') return true;
  if (Array.isArray(value)) return value.length === 0;
  if (Buffer.isBuffer(value)) return value.length === 0;
  return false;
}

/** Decodes a JSON body into the plain object protobufjs expects for `fullName`. */
export function jsonToMessage(json: unknown, fullName: string, depth = 0): Record<string, unknown> {
  if (depth > nestingDepthMax) throw new JsonDecodeError('message nested too deeply');
  if (json === null || json === undefined) return {};
  if (typeof json !== 'object' || Array.isArray(json))
    throw new JsonDecodeError(`expected an object for ${fullName}`);
  const { descriptor } = resolveMessage(fullName, '');
  const scope = packageOf(fullName);
  const input = json as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of descriptor.field) {
    const value = input[field.name] ?? input[camel(field.name)];
    if (value === undefined || value === null) continue;
    const decodeOne = (v: unknown) => decodeValue(v, field, scope, depth);
    if (field.label === 'LABEL_REPEATED') {
      if (!Array.isArray(value)) throw new JsonDecodeError(`field ${field.name} must be an array`);
      out[field.name] = value.map(decodeOne);
    } else {
      out[field.name] = decodeOne(value);
    }
  }
  return out;
}

function decodeValue(value: unknown, field: FieldDescriptor, scope: string, depth: number): unknown {
  if (field.type === 'TYPE_BYTES') {
    if (typeof value !== 'string') throw new JsonDecodeError(`field ${field.name} must be base64`);
    return Buffer.from(value, 'base64');
  }
  if (field.type === 'TYPE_MESSAGE') {
    const { fullName } = resolveMessage(field.typeName, scope);
    return jsonToMessage(value, fullName, depth + 1);
  }
  if (int64Types.has(field.type)) {
    if (typeof value !== 'string' && typeof value !== 'number') {
      throw new JsonDecodeError(`field ${field.name} must be an integer`);
    }
    if (!/^-?\d+$/.test(String(value))) throw new JsonDecodeError(`field ${field.name} must be an integer`);
    return String(value);
  }
  return value;
}

/** Encodes a decoded protobuf object (proto-loader shape) as gateway JSON. */
export function messageToJson(message: unknown, fullName: string, depth = 0): Record<string, unknown> {
  if (depth > nestingDepthMax) throw new Error('message nested too deeply');
  const { descriptor } = resolveMessage(fullName, '');
  const scope = packageOf(fullName);
  const input = (message ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of descriptor.field) {
    const value = input[field.name];
    if (isDefault(value)) continue;
    // Enum zero values are defaults too (jsonpb omits them).
    if (field.type === 'TYPE_ENUM' && value === enumZeroName(field.typeName, descriptor, scope)) continue;
    const encodeOne = (v: unknown) => encodeValue(v, field, scope, depth);
    out[field.name] =
      field.label === 'LABEL_REPEATED' ? (value as unknown[]).map(encodeOne) : encodeOne(value);
  }
  return out;
}

interface EnumDescriptor {
  value: Array<{ name: string; number: number }>;
}

/** The name of an enum's zero value; nested enums are looked up inside their message first. */
function enumZeroName(typeName: string, message: MessageDescriptor, scope: string): string | undefined {
  const nested = message.enumType.find((e) => e.name === typeName);
  if (nested !== undefined) return nested.value.find((v) => v.number === 0)?.name;
  const definitions = etcdPackageDefinition();
  for (const candidate of [`${scope}.${typeName}`, typeName]) {
    const definition = definitions[candidate] as protoLoader.EnumTypeDefinition | undefined;
    if (definition !== undefined && definition.format === 'Protocol Buffer 3 EnumDescriptorProto') {
      const zero = (definition.type as unknown as EnumDescriptor).value.find((v) => v.number === 0);
      return zero?.name;
    }
  }
  throw new Error(`unknown enum type ${typeName} in ${scope}`);
}

function encodeValue(value: unknown, field: FieldDescriptor, scope: string, depth: number): unknown {
  if (field.type === 'TYPE_BYTES') return Buffer.from(value as Uint8Array).toString('base64');
  if (field.type === 'TYPE_MESSAGE') {
    const { fullName } = resolveMessage(field.typeName, scope);
    return messageToJson(value, fullName, depth + 1);
  }
  if (int64Types.has(field.type)) return String(value);
  return value;
}
