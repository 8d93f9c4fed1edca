// A dashboard JSON file cannot spell a TypeScript enum member: where @grafana/schema types a
// field as a string enum (e.g. ThresholdsMode), JSON holds the enum's string value
// ("absolute"). Loose<T> replaces each string enum by the union of its values, which is exactly
// what Grafana accepts in JSON; every other type is kept as it is (numeric enums too: JSON
// numbers are checked against their members).
export type Loose<T> = T extends string
  ? `${T}`
  : T extends readonly (infer E)[]
    ? Loose<E>[]
    : T extends object
      ? { [K in keyof T]: Loose<T[K]> }
      : T;
