// Protobuf -> JSON the way etcd's grpc-gateway renders it (jsonpb with original field names,
// defaults omitted): bytes as base64, 64-bit integers as decimal strings, enums by name. Reading
// requests is go-json.ts's (Go's JSON rules and error texts).

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

function isDefault(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === '' || value === 0) return true;
  if (value === '0') return true;
  if (Array.isArray(value)) return value.length === 0;
  if (Buffer.isBuffer(value)) return value.length === 0;
  return false;
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
