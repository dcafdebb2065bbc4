// A small typed builder for structural OpenAPI v3 schemas: one declaration gives both the CRD's
// schema (with a description on every field, defaults and CEL rules) and the TypeScript type of
// the object as the API server returns it (defaults applied). See v1alpha1.ts for the use.

/** The subset of apiextensions.k8s.io/v1 JSONSchemaProps that SandboxPool uses. */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean' | 'number';
  description?: string;
  properties?: Record<string, JSONSchemaProps>;
  additionalProperties?: JSONSchemaProps;
  items?: JSONSchemaProps;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
  pattern?: string;
  format?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  maxProperties?: number;
  nullable?: boolean;
  anyOf?: JSONSchemaProps[];
  'x-kubernetes-int-or-string'?: boolean;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-map-type'?: 'atomic' | 'granular';
  'x-kubernetes-validations'?: ValidationRule[];
}

/** A CEL rule (x-kubernetes-validations). */
export interface ValidationRule {
  rule: string;
  message: string;
  fieldPath?: string;
  reason?:
    'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

/**
 * A schema node. `T` is the TypeScript type of the value as read back from the API server;
 * `Opt` says whether it may be absent there (no default and not required).
 */
export interface Schema<T, Opt extends boolean = false> {
  readonly json: JSONSchemaProps;
  /** Property schemas, for objects (used by applyDefaults). */
  readonly props?: Readonly<Record<string, Schema<unknown, boolean>>>;
  readonly optional: Opt;
  /** Phantom: never set, carries T for inference. */
  readonly _type?: T;
}

export type Infer<S> = S extends Schema<infer T, boolean> ? T : never;

type Props = Record<string, Schema<unknown, boolean>>;
type RequiredKeys<P extends Props> = {
  [K in keyof P]: P[K] extends Schema<unknown, true> ? never : K;
}[keyof P];
type OptionalKeys<P extends Props> = {
  [K in keyof P]: P[K] extends Schema<unknown, true> ? K : never;
}[keyof P];
type Flatten<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<P extends Props> = Flatten<
  { [K in RequiredKeys<P>]: Infer<P[K]> } & { [K in OptionalKeys<P>]?: Infer<P[K]> }
>;

interface Common<T> {
  /** Shown by `kubectl explain`; required on every field. */
  description: string;
  default?: T;
  validations?: ValidationRule[];
}

function node<T>(json: JSONSchemaProps, extra: Partial<Schema<T>> = {}): Schema<T> {
  if (!json.description?.trim()) throw new Error('every schema node needs a description');
  return { json, optional: false, ...extra };
}

function common<T>(o: Common<T>): JSONSchemaProps {
  return {
    description: o.description,
    ...(o.default !== undefined ? { default: o.default } : {}),
    ...(o.validations ? { 'x-kubernetes-validations': o.validations } : {}),
  };
}

/** Marks a field that may be absent (no default, not required). */
export function optional<T>(s: Schema<T>): Schema<T, true> {
  return { ...s, optional: true };
}

export function string(
  o: Common<string> & {
    enum?: readonly string[];
    pattern?: string;
    minLength?: number;
    maxLength?: number;
    format?: string;
  },
): Schema<string> {
  return node({
    type: 'string',
    ...common(o),
    ...(o.enum ? { enum: [...o.enum] } : {}),
    ...(o.pattern !== undefined ? { pattern: o.pattern } : {}),
    ...(o.minLength !== undefined ? { minLength: o.minLength } : {}),
    ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}),
    ...(o.format !== undefined ? { format: o.format } : {}),
  });
}

/** A string restricted to the given values, typed as their union. */
export function enumOf<const V extends readonly string[]>(
  values: V,
  o: Common<V[number]>,
): Schema<V[number]> {
  return node({ type: 'string', ...common(o), enum: [...values] });
}

export function integer(
  o: Common<number> & { minimum?: number; maximum?: number },
): Schema<number> {
  return node({
    type: 'integer',
    ...common(o),
    ...(o.minimum !== undefined ? { minimum: o.minimum } : {}),
    ...(o.maximum !== undefined ? { maximum: o.maximum } : {}),
  });
}

export function boolean(o: Common<boolean>): Schema<boolean> {
  return node({ type: 'boolean', ...common(o) });
}

/** A Kubernetes resource quantity ("500m", "1Gi", 2). */
export function quantity(o: Common<string | number>): Schema<string | number> {
  return node({
    ...common(o),
    anyOf: [{ type: 'integer' }, { type: 'string' }],
    pattern:
      '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$',
    'x-kubernetes-int-or-string': true,
  });
}

export function array<T>(
  items: Schema<T, boolean>,
  o: Common<T[]> & {
    maxItems: number;
    minItems?: number;
    listType?: 'atomic' | 'set' | 'map';
    listMapKeys?: string[];
  },
): Schema<T[]> {
  return node({
    type: 'array',
    ...common(o),
    items: items.json,
    maxItems: o.maxItems,
    ...(o.minItems !== undefined ? { minItems: o.minItems } : {}),
    ...(o.listType ? { 'x-kubernetes-list-type': o.listType } : {}),
    ...(o.listMapKeys ? { 'x-kubernetes-list-map-keys': o.listMapKeys } : {}),
  });
}

/** A map with string keys (additionalProperties). */
export function record<T>(
  values: Schema<T, boolean>,
  o: Common<Record<string, T>> & { maxProperties?: number },
): Schema<Record<string, T>> {
  return node({
    type: 'object',
    ...common(o),
    additionalProperties: values.json,
    ...(o.maxProperties !== undefined ? { maxProperties: o.maxProperties } : {}),
  });
}

/**
 * An object with declared properties. A property is listed as `required` when it is neither
 * optional nor defaulted; defaulted ones are always present when read back.
 */
export function object<P extends Props>(
  props: P,
  // An object's default may leave out what its properties' own defaults fill in (e.g. {}).
  o: Omit<Common<ObjectOf<P>>, 'default'> & { default?: Partial<ObjectOf<P>> },
): Schema<ObjectOf<P>> {
  const required = Object.entries(props)
    .filter(([, s]) => !s.optional && s.json.default === undefined)
    .map(([k]) => k);
  const properties: Record<string, JSONSchemaProps> = {};
  for (const [k, s] of Object.entries(props)) properties[k] = s.json;
  return node(
    {
      type: 'object',
      ...common(o),
      properties,
      ...(required.length > 0 ? { required } : {}),
    },
    { props },
  );
}

/**
 * An object whose content is a Kubernetes type we pass through to the pod (affinity,
 * tolerations): kept as given, validated by the API server when the operator applies it.
 */
export function passthrough<T>(o: Common<T>): Schema<T> {
  return node({ type: 'object', ...common(o), 'x-kubernetes-preserve-unknown-fields': true });
}

/** Every node of a schema, with its dotted path (for tests: descriptions, CEL bounds). */
export function* walk(json: JSONSchemaProps, path = ''): Generator<[string, JSONSchemaProps]> {
  yield [path, json];
  for (const [k, p] of Object.entries(json.properties ?? {})) yield* walk(p, `${path}.${k}`);
  if (json.items) yield* walk(json.items, `${path}[]`);
  if (json.additionalProperties) yield* walk(json.additionalProperties, `${path}{}`);
}

/**
 * Structural defaulting as the API server does it: a missing property with a default gets a
 * copy of it, then defaults apply inside objects, arrays and maps. Returns a new value.
 */
export function applyDefaults<T>(schema: Schema<T, boolean>, value: unknown): T {
  return defaultJson(schema.json, value) as T;
}

function defaultJson(json: JSONSchemaProps, value: unknown): unknown {
  if (value === undefined || value === null) return value;
  if (Array.isArray(value)) {
    const items = json.items;
    return items ? value.map((v) => defaultJson(items, v)) : value;
  }
  if (typeof value !== 'object') return value;
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  if (json.properties) {
    for (const [k, p] of Object.entries(json.properties)) {
      if (out[k] === undefined && p.default !== undefined) out[k] = structuredClone(p.default);
      if (out[k] !== undefined) out[k] = defaultJson(p, out[k]);
    }
  } else if (json.additionalProperties) {
    const ap = json.additionalProperties;
    for (const k of Object.keys(out)) out[k] = defaultJson(ap, out[k]);
  }
  return out;
}
