// Types used by check-dashboards.sh to type-check dashboard JSON against
// @grafana/schema (the version pinned in package.json should match the
// Grafana image in ../docker-compose.monitoring.yml).
//
// 1. Json<T>: JSON cannot name a TypeScript enum, so every *string* enum in
//    the schema (FieldColorModeId, ThresholdsMode, MappingType, ...) also
//    accepts its values as plain string literals ("thresholds", "absolute",
//    "value"...). Nothing else is relaxed: unknown keys, wrong value types and
//    invalid enum strings are still errors. (Numeric enums already accept
//    their numeric literals.)
// 2. PanelOf<type>: each panel is also checked against its plugin's own
//    `options` and `fieldConfig.defaults.custom` types (the dashboard type
//    alone leaves both as Record<string, unknown>). Only the panel types
//    listed in PanelTypes are allowed.
// 3. Project rules: every panel and every query names the Prometheus data
//    source {type: "prometheus", uid: "prometheus"}; queries are PromQL
//    targets with known keys.

import type { DataQuery, FieldConfig, FieldConfigSource, Panel } from '@grafana/schema';
import type * as Stat from '@grafana/schema/dist/types/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen.d.ts';
import type * as TimeSeries from '@grafana/schema/dist/types/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.d.ts';
import type * as Table from '@grafana/schema/dist/types/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen.d.ts';
import type * as StateTimeline from '@grafana/schema/dist/types/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen.d.ts';

export type Json<T> = T extends string
  ? T | `${T}`
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

export interface PrometheusRef {
  type: 'prometheus';
  uid: 'prometheus';
}

export interface PromTarget extends Omit<DataQuery, 'datasource'> {
  datasource: PrometheusRef;
  expr: string;
  legendFormat?: string;
  editorMode?: 'code' | 'builder';
  range?: boolean;
  instant?: boolean;
  format?: 'time_series' | 'table' | 'heatmap';
  interval?: string;
  intervalFactor?: number;
  exemplar?: boolean;
}

type Typed<Type extends string, Options, Custom> = Omit<Panel, 'type' | 'datasource' | 'targets' | 'options' | 'fieldConfig'> & {
  type: Type;
  datasource: PrometheusRef;
  targets: PromTarget[];
  options?: Partial<Options>;
  fieldConfig?: Omit<FieldConfigSource, 'defaults'> & {
    defaults: Omit<FieldConfig, 'custom'> & { custom?: Partial<Custom> };
  };
};

export interface PanelTypes {
  stat: Typed<'stat', Stat.Options, never>;
  timeseries: Typed<'timeseries', TimeSeries.Options, TimeSeries.FieldConfig>;
  table: Typed<'table', Table.Options, Table.FieldConfig>;
  'state-timeline': Typed<'state-timeline', StateTimeline.Options, StateTimeline.FieldConfig>;
}

/**
 * A panel of one of the types above, fully typed. Any other panel type is an
 * error ("does not satisfy the constraint"): a misspelt type, or a new panel
 * plugin to add to PanelTypes (its types live under
 * @grafana/schema/dist/types/raw/composable/<plugin>/panelcfg/x/).
 */
export type PanelOf<T extends keyof PanelTypes> = Json<PanelTypes[T]>;
