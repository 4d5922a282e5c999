//! The analysis kinds: `AnalysisTemplate`, `ClusterAnalysisTemplate` and `AnalysisRun`.
//!
//! Field names and shapes are Argo Rollouts' (`analysis_types.go`), so an Argo manifest works here with
//! only `apiVersion` changed, for the providers Sluice has: `prometheus` (with Sluice's
//! `authentication.basicAuth` / `authentication.bearer`) and Sluice's own `scrape`, which reads a
//! Prometheus exposition-format endpoint directly.
//!
//! Defaults are not in the schema (what a user wrote round-trips unchanged); they are applied through the
//! accessor methods here ([`Metric::failure_limit`], [`PrometheusMetric::timeout`], ...), with Argo's
//! values.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, api_enum_names};
use crate::duration::{DurationError, parse_duration};

/// `failureLimit` when not set: the first failed measurement fails the metric. `-1` disables the limit.
pub const DEFAULT_FAILURE_LIMIT: i32 = 0;
/// `inconclusiveLimit` when not set.
pub const DEFAULT_INCONCLUSIVE_LIMIT: i32 = 0;
/// `consecutiveErrorLimit` when not set: the fifth error in a row errors the metric.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: i32 = 4;
/// `consecutiveSuccessLimit` when not set: off.
pub const DEFAULT_CONSECUTIVE_SUCCESS_LIMIT: i32 = 0;
/// Timeout of a Prometheus query or a scrape when `timeout` is not set (or not positive).
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest provider `timeout` honoured; a longer one is cut to it.
pub const MAX_PROVIDER_TIMEOUT: Duration = Duration::from_secs(300);
/// Measurements kept per metric in an AnalysisRun's status when no `measurementRetention` applies.
pub const DEFAULT_MEASUREMENT_RETENTION: i32 = 10;

/// A spec value that cannot be interpreted (typically an `{{args.x}}` placeholder left unresolved).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisSpecError {
    #[error("metric {metric:?}: {field} {value:?} is not an integer")]
    NotAnInteger {
        metric: String,
        field: &'static str,
        value: String,
    },
    #[error("metric {metric:?}: {field}: {source}")]
    InvalidDuration {
        metric: String,
        field: &'static str,
        #[source]
        source: DurationError,
    },
    #[error("metric {metric:?}: interval {value:?} is shorter than the minimum of 1s")]
    IntervalTooShort { metric: String, value: String },
}

/// The shortest `interval` between measurements: anything faster only loads the metrics server.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------------
// AnalysisTemplate / ClusterAnalysisTemplate
// ---------------------------------------------------------------------------------------------------

/// What to measure and how to judge it; instantiated as an [`AnalysisRun`] by a Rollout.
///
/// The same spec serves the namespaced `AnalysisTemplate` and (through [`ClusterAnalysisTemplateSpec`],
/// a transparent wrapper) the cluster-scoped `ClusterAnalysisTemplate`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisTemplate",
    namespaced,
    shortname = "at",
    status = "AnalysisTemplateStatus",
    derive = "PartialEq",
    doc = "A template for analysis: the metrics to measure and the conditions that judge them.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[schemars(
    description = "What to measure and how to judge it; a Rollout instantiates it as an AnalysisRun."
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateSpec {
    /// The metrics to measure (at most 100: the bound keeps the CRD's validation rules within the
    /// API server's cost budget).
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub metrics: Vec<Metric>,
    /// Arguments the metrics use as `{{args.NAME}}`; a value may be left for the Rollout to give.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Metrics measured and shown but never failing the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements to keep per metric (default 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Other templates whose metrics, arguments and rules this one includes (Argo ≥ 1.7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub templates: Vec<crate::api::rollout::RolloutAnalysisTemplate>,
    /// Why `templates` could not be composed (a template not found, a cycle, a metric defined
    /// twice), once resolved by the controller; never read from or written to the API.
    #[serde(skip)]
    #[schemars(skip)]
    pub composition_error: Option<String>,
}

/// The spec of a `ClusterAnalysisTemplate`: exactly an [`AnalysisTemplateSpec`] (same fields on the
/// wire and in the schema); dereferences to it.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "ClusterAnalysisTemplate",
    shortname = "cat",
    status = "AnalysisTemplateStatus",
    derive = "PartialEq",
    doc = "A cluster-wide template for analysis, usable from a Rollout in any namespace.",
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(transparent)]
#[schemars(
    transparent,
    description = "What to measure and how to judge it; a Rollout instantiates it as an AnalysisRun."
)]
pub struct ClusterAnalysisTemplateSpec(pub AnalysisTemplateSpec);

impl Deref for ClusterAnalysisTemplateSpec {
    type Target = AnalysisTemplateSpec;

    fn deref(&self) -> &AnalysisTemplateSpec {
        &self.0
    }
}

impl DerefMut for ClusterAnalysisTemplateSpec {
    fn deref_mut(&mut self) -> &mut AnalysisTemplateSpec {
        &mut self.0
    }
}

impl From<AnalysisTemplateSpec> for ClusterAnalysisTemplateSpec {
    fn from(spec: AnalysisTemplateSpec) -> Self {
        Self(spec)
    }
}

/// Status of a template (Argo's templates have none): conditions a controller may report, such as a
/// template that cannot be instantiated.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisTemplateStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl AnalysisTemplateSpec {
    /// The Argo fields set in this spec that Sluice does not implement (see
    /// [`crate::api::unsupported`]), as paths from the object's root.
    pub fn unsupported_fields(&self) -> Vec<String> {
        serde_json::to_value(self).map_or_else(
            |_| Vec::new(),
            |value| {
                crate::api::unsupported::set_paths(
                    &value,
                    "spec",
                    crate::api::unsupported::analysis_template_spec(),
                )
            },
        )
    }

    /// Whether the metric named `metric_name` runs in dry-run mode (see [`DryRun::applies_to`]).
    pub fn is_dry_run(&self, metric_name: &str) -> bool {
        is_dry_run(&self.dry_run, metric_name)
    }

    /// How many measurements of `metric_name` to keep (see [`MeasurementRetention::applies_to`]).
    pub fn measurement_retention_limit(&self, metric_name: &str) -> i32 {
        measurement_retention_limit(&self.measurement_retention, metric_name)
    }
}

// ---------------------------------------------------------------------------------------------------
// Metric
// ---------------------------------------------------------------------------------------------------

/// One metric: a provider query, how often to run it, and the conditions that judge each result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "!has(self.interval) || self.interval == '' || self.interval.contains('{{') || duration(self.interval) >= duration('1s')"
).message("interval must be at least 1s").field_path(".interval"))]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// Name of the metric, unique in its template or run.
    pub name: String,
    /// Time between measurements (`30s`, `5m`, `1h`; at least `1s`). Without it (and without
    /// `count`) there is one measurement; with it and no `count`, measurements go on until the run
    /// is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(crate::duration::DURATION_OR_ARG_PATTERN))]
    pub interval: Option<String>,
    /// Time to wait before the first measurement (`30s`, `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), pattern(crate::duration::DURATION_OR_ARG_PATTERN))]
    pub initial_delay: Option<String>,
    /// Number of measurements to take (may be an `{{args.x}}` string in a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32_or_string_schema")]
    pub count: Option<IntOrString>,
    /// Expression over `result` that makes a measurement Successful, e.g. `result[0] >= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub success_condition: Option<String>,
    /// Expression over `result` that makes a measurement Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the metric fails (default 0; -1 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32_or_string_schema")]
    pub failure_limit: Option<IntOrString>,
    /// Inconclusive measurements tolerated before the metric is Inconclusive (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32_or_string_schema")]
    pub inconclusive_limit: Option<IntOrString>,
    /// Errors in a row tolerated before the metric is Error (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32_or_string_schema")]
    pub consecutive_error_limit: Option<IntOrString>,
    /// Successes in a row after which the metric is Successful (default 0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int32_or_string_schema")]
    pub consecutive_success_limit: Option<IntOrString>,
    /// Where the measurement comes from.
    pub provider: MetricProvider,
}

impl Metric {
    /// `failureLimit`, default [`DEFAULT_FAILURE_LIMIT`].
    pub fn failure_limit(&self) -> Result<i32, AnalysisSpecError> {
        self.int_field(
            "failureLimit",
            self.failure_limit.as_ref(),
            DEFAULT_FAILURE_LIMIT,
        )
    }

    /// `inconclusiveLimit`, default [`DEFAULT_INCONCLUSIVE_LIMIT`].
    pub fn inconclusive_limit(&self) -> Result<i32, AnalysisSpecError> {
        self.int_field(
            "inconclusiveLimit",
            self.inconclusive_limit.as_ref(),
            DEFAULT_INCONCLUSIVE_LIMIT,
        )
    }

    /// `consecutiveErrorLimit`, default [`DEFAULT_CONSECUTIVE_ERROR_LIMIT`].
    pub fn consecutive_error_limit(&self) -> Result<i32, AnalysisSpecError> {
        self.int_field(
            "consecutiveErrorLimit",
            self.consecutive_error_limit.as_ref(),
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
        )
    }

    /// `consecutiveSuccessLimit`, default [`DEFAULT_CONSECUTIVE_SUCCESS_LIMIT`] (off).
    pub fn consecutive_success_limit(&self) -> Result<i32, AnalysisSpecError> {
        self.int_field(
            "consecutiveSuccessLimit",
            self.consecutive_success_limit.as_ref(),
            DEFAULT_CONSECUTIVE_SUCCESS_LIMIT,
        )
    }

    /// How many measurements to take, as Argo's `EffectiveCount`: `count` when set and non-zero;
    /// otherwise 1 without `interval`, and `None` (until terminated) with one.
    pub fn effective_count(&self) -> Result<Option<i32>, AnalysisSpecError> {
        let count = self.int_field("count", self.count.as_ref(), 0)?;
        if count != 0 {
            Ok(Some(count))
        } else if self.interval.as_deref().is_none_or(str::is_empty) {
            Ok(Some(1))
        } else {
            Ok(None)
        }
    }

    /// `interval` parsed; `None` when unset or empty.
    pub fn interval(&self) -> Result<Option<Duration>, AnalysisSpecError> {
        let interval = self.duration_field("interval", self.interval.as_deref())?;
        match interval {
            Some(d) if d < MIN_INTERVAL => Err(AnalysisSpecError::IntervalTooShort {
                metric: self.name.clone(),
                value: self.interval.clone().unwrap_or_default(),
            }),
            _ => Ok(interval),
        }
    }

    /// `initialDelay` parsed; `None` when unset or empty.
    pub fn initial_delay(&self) -> Result<Option<Duration>, AnalysisSpecError> {
        self.duration_field("initialDelay", self.initial_delay.as_deref())
    }

    fn int_field(
        &self,
        field: &'static str,
        value: Option<&IntOrString>,
        default: i32,
    ) -> Result<i32, AnalysisSpecError> {
        match value {
            None => Ok(default),
            Some(IntOrString::Int(i)) => Ok(*i),
            Some(IntOrString::String(s)) => {
                s.trim()
                    .parse()
                    .map_err(|_| AnalysisSpecError::NotAnInteger {
                        metric: self.name.clone(),
                        field,
                        value: s.clone(),
                    })
            }
        }
    }

    fn duration_field(
        &self,
        field: &'static str,
        value: Option<&str>,
    ) -> Result<Option<Duration>, AnalysisSpecError> {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        parse_duration(value)
            .map(Some)
            .map_err(|source| AnalysisSpecError::InvalidDuration {
                metric: self.name.clone(),
                field,
                source,
            })
    }
}

/// An int-or-string whose integer form fits in an i32: a larger number would be stored by the API
/// server and then fail to decode in the controller, hiding every object listed with it.
fn int32_or_string_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "nullable": true,
        "minimum": i32::MIN,
        "maximum": i32::MAX,
    })
}

/// Argo's `JobMetric`: `metadata` (labels and annotations copied to the Job) and `spec` (a
/// batch/v1 JobSpec). The JobSpec is kept as written rather than typed here: the API server validates
/// it when the Job is created (strictly, so an unknown field is refused, not dropped), and a
/// refusal is an Error measurement naming the reason.
fn job_metric_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "required": ["spec"],
        "properties": {
            "metadata": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}
                }
            },
            "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    })
}

/// The provider of a metric's measurements: exactly one must be set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.prometheus) ? 1 : 0) + (has(self.scrape) ? 1 : 0) + (has(self.cloudWatch) ? 1 : 0) + (has(self.datadog) ? 1 : 0) + (has(self.graphite) ? 1 : 0) + (has(self.influxdb) ? 1 : 0) + (has(self.job) ? 1 : 0) + (has(self.kayenta) ? 1 : 0) + (has(self.newRelic) ? 1 : 0) + (has(self.plugin) ? 1 : 0) + (has(self.skywalking) ? 1 : 0) + (has(self.wavefront) ? 1 : 0) + (has(self.web) ? 1 : 0) == 1")
    .message("exactly one metric provider must be set"))]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    /// A PromQL query against a Prometheus server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusMetric>,
    /// A direct read of a Prometheus exposition-format endpoint (Sluice's own provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeMetric>,
    /// Argo's `cloudWatch`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub cloud_watch: Option<serde_json::Value>,
    /// Argo's `datadog`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub datadog: Option<serde_json::Value>,
    /// Argo's `graphite`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub graphite: Option<serde_json::Value>,
    /// Argo's `influxdb`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub influxdb: Option<serde_json::Value>,
    /// Argo's `job`: each measurement runs a batch/v1 Job built from `spec` (a JobSpec, kept as
    /// written and judged by the API server when the Job is created), with the labels and
    /// annotations of `metadata`. The Job completing makes the measurement Successful, failing
    /// makes it Failed; `successCondition`/`failureCondition` are not used (as in Argo). See
    /// [`crate::analysis::provider::job`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "job_metric_schema")]
    pub job: Option<serde_json::Value>,
    /// Argo's `kayenta`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub kayenta: Option<serde_json::Value>,
    /// Argo's `newRelic`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub new_relic: Option<serde_json::Value>,
    /// Argo's `plugin`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub plugin: Option<serde_json::Value>,
    /// Argo's `skywalking`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub skywalking: Option<serde_json::Value>,
    /// Argo's `wavefront`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub wavefront: Option<serde_json::Value>,
    /// An HTTP request whose (JSON) answer is the result, as Argo Rollouts' `web` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebMetric>,
}

/// A Prometheus query. `result` is a number for a scalar, a list of numbers for a vector (`[]` when
/// empty) and a flat list for a `rangeQuery` matrix.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// Base URL of the Prometheus server; when unset, the controller's `--prometheus-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The PromQL query; `{{args.NAME}}` is replaced by the argument's value.
    pub query: String,
    /// Query timeout in seconds (default 30, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Extra HTTP headers sent with the query.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Credentials for the Prometheus server (Sluice extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<PrometheusAuthentication>,
    /// Run a range query instead of an instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_query: Option<PrometheusRangeQuery>,
}

impl PrometheusMetric {
    /// `timeout`, default [`DEFAULT_PROVIDER_TIMEOUT`] (also when not positive).
    pub fn timeout(&self) -> Duration {
        provider_timeout(self.timeout)
    }

    /// `insecure`, default false.
    pub fn insecure(&self) -> bool {
        self.insecure.unwrap_or(false)
    }
}

/// An HTTP header `key: value`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeader {
    pub key: String,
    pub value: String,
}

/// Credentials for a Prometheus server: at most one method.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "(has(self.basicAuth) ? 1 : 0) + (has(self.bearer) ? 1 : 0) + (has(self.oauth2) && has(self.oauth2.tokenUrl) && size(self.oauth2.tokenUrl) > 0 ? 1 : 0) <= 1"
).message("at most one of basicAuth, bearer and oauth2 may be set"))]
#[serde(rename_all = "camelCase")]
pub struct PrometheusAuthentication {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<BearerAuth>,
    /// OAuth2 client credentials: a token is fetched from `tokenUrl` before each query and sent as
    /// `Authorization` (Argo's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// Argo's `sigv4`: kept as written, not implemented (a metric using it is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub sigv4: Option<serde_json::Value>,
}

/// HTTP basic authentication: Argo's `password` (usually `{{args.NAME}}` of an argument read from a
/// Secret), or Sluice's `passwordSecretRef` read from a Secret in the run's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.password) != has(self.passwordSecretRef)")
    .message("exactly one of password and passwordSecretRef must be set"))]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
}

/// `Authorization: Bearer <token>`; the token is read from a Secret in the run's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerAuth {
    pub token_secret_ref: SecretKeyRef,
}

/// A range query: `start` and `end` are time expressions (e.g. `now() - duration("5m")`), `step` a
/// duration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRangeQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub end: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub step: Option<String>,
}

/// Sluice's direct-scrape provider: fetch `url` (Prometheus exposition format) and take the samples of
/// the series `metric` whose labels include all of `labels`. `result` is the list of their values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeMetric {
    /// The endpoint to read, e.g. `http://my-app.default.svc:8080/metrics`.
    pub url: String,
    /// Name of the series (metric family sample name), e.g. `http_requests_total`.
    pub metric: String,
    /// Label selector: only samples with all of these label values are taken.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Timeout in seconds (default 30, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Extra HTTP headers sent with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeader>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
}

impl ScrapeMetric {
    /// `timeout`, default [`DEFAULT_PROVIDER_TIMEOUT`] (also when not positive).
    pub fn timeout(&self) -> Duration {
        provider_timeout(self.timeout)
    }

    /// `insecure`, default false.
    pub fn insecure(&self) -> bool {
        self.insecure.unwrap_or(false)
    }
}

/// Timeout of a web request when `timeoutSeconds` is not set (or not positive): Argo's 10 s.
pub const DEFAULT_WEB_TIMEOUT: Duration = Duration::from_secs(10);

/// Argo Rollouts' `web` provider: an HTTP request whose answer, read through `jsonPath` (k8s
/// JSONPath, e.g. `{$.data.ok}`; default the whole body), is the `result` the conditions judge. A body
/// that is not JSON is `result` as a string. Every string field takes `{{args.NAME}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.body) && size(self.body) > 0 && has(self.jsonBody))")
    .message("provider.web: set body or jsonBody, not both"))]
#[x_kube(validation = Rule::new(
    "(has(self.method) && self.method != 'GET') || ((!has(self.body) || size(self.body) == 0) && !has(self.jsonBody))"
).message("provider.web: body and jsonBody need method POST or PUT"))]
#[serde(rename_all = "camelCase")]
pub struct WebMetric {
    /// `GET` (default), `POST` or `PUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<WebMetricMethod>,
    /// The address to request, `http://` or `https://`.
    #[schemars(length(max = 8192))]
    pub url: String,
    /// HTTP headers sent with the request (values may come from Secret arguments).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub headers: Vec<HttpHeader>,
    /// A text body (method POST or PUT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 262144))]
    pub body: Option<String>,
    /// Request timeout in seconds (default 10, at most 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// k8s JSONPath selecting `result` in a JSON answer, e.g. `{$.data.ok}` (default `{$}`: all of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub json_path: Option<String>,
    /// Skip TLS certificate verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// A JSON body (method POST or PUT); sent with `Content-Type: application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "json_object_schema")]
    pub json_body: Option<serde_json::Value>,
    /// Credentials for the request: `oauth2` client credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<WebMetricAuthentication>,
}

impl WebMetric {
    /// `method`, default GET.
    pub fn method(&self) -> WebMetricMethod {
        self.method.unwrap_or_default()
    }

    /// `timeoutSeconds`, default [`DEFAULT_WEB_TIMEOUT`] (also when not positive), at most
    /// [`MAX_PROVIDER_TIMEOUT`].
    pub fn timeout(&self) -> Duration {
        match self.timeout_seconds.and_then(|s| u64::try_from(s).ok()) {
            Some(s) if s > 0 => Duration::from_secs(s).min(MAX_PROVIDER_TIMEOUT),
            _ => DEFAULT_WEB_TIMEOUT,
        }
    }

    /// `insecure`, default false.
    pub fn insecure(&self) -> bool {
        self.insecure.unwrap_or(false)
    }
}

/// The HTTP method of a web metric: `GET` (default), `POST` or `PUT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum WebMetricMethod {
    /// `GET` (no body).
    #[default]
    Get,
    /// `POST` with `body` or `jsonBody`.
    Post,
    /// `PUT` with `body` or `jsonBody`.
    Put,
}

/// Credentials of a web metric, Argo's `Authentication`. Only `oauth2` is implemented; `sigv4` and
/// `basicAuth` (which Argo's web provider ignores) are refused rather than silently dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebMetricAuthentication {
    /// OAuth2 client credentials: a token is fetched from `tokenUrl` and sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// AWS SigV4 signing: not supported (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<Sigv4Config>,
    /// Basic authentication: not supported for web metrics (refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<WebBasicAuth>,
}

/// OAuth2 client-credentials flow (RFC 6749 section 4.4), Argo's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2Config {
    /// The token endpoint; the flow runs only when it is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    pub token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Usually `{{args.NAME}}` of an argument read from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// Argo's AWS SigV4 settings (kept so they are refused, not pruned). An empty one (as Go clients
/// write Argo's non-pointer struct) is no setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.region) && !has(self.profile) && !has(self.roleArn)")
    .message("provider.web.authentication.sigv4 is not supported by Sluice; use oauth2 or headers"))]
#[serde(rename_all = "camelCase")]
pub struct Sigv4Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
}

/// Argo's basic authentication settings (kept so they are refused, not pruned; Argo's web provider
/// ignores them). An empty one is no setting.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.username) && !has(self.password)")
    .message("provider.web.authentication.basicAuth is not supported for web metrics (Argo ignores it); send an Authorization header"))]
#[serde(rename_all = "camelCase")]
pub struct WebBasicAuth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Any JSON object, kept as written.
fn json_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `timeout`: the default when unset or not positive, at most [`MAX_PROVIDER_TIMEOUT`] (a reconcile
/// waits for its measurements).
fn provider_timeout(seconds: Option<i64>) -> Duration {
    match seconds.and_then(|s| u64::try_from(s).ok()) {
        Some(s) if s > 0 => Duration::from_secs(s).min(MAX_PROVIDER_TIMEOUT),
        _ => DEFAULT_PROVIDER_TIMEOUT,
    }
}

// ---------------------------------------------------------------------------------------------------
// Arguments, dry run, retention
// ---------------------------------------------------------------------------------------------------

/// An argument, used in queries as `{{args.NAME}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!(has(self.value) && has(self.valueFrom))")
    .message("value and valueFrom are mutually exclusive"))]
#[serde(rename_all = "camelCase")]
pub struct Argument {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

/// Where an argument's value comes from: exactly one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new(
    "(has(self.secretKeyRef) ? 1 : 0) + (has(self.fieldRef) ? 1 : 0) + (has(self.podTemplateHashValue) ? 1 : 0) == 1"
).message("exactly one of secretKeyRef, fieldRef and podTemplateHashValue must be set"))]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    /// A key of a Secret in the run's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeyRef>,
    /// A field of the Rollout, e.g. `metadata.labels['app']`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<FieldRef>,
    /// The pod template hash of the stable or the latest (canary) ReplicaSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_hash_value: Option<PodTemplateHashValue>,
}

/// A key of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// A path to a field of the Rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FieldRef {
    pub field_path: String,
}

/// Which ReplicaSet's `rollouts-pod-template-hash` an argument takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum PodTemplateHashValue {
    /// The stable ReplicaSet's hash.
    Stable,
    /// The newest ReplicaSet's hash (the canary, or the preview of a blue-green).
    Latest,
}

/// A metric run in dry-run mode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRun {
    /// Metric name; `*` or `.*` means every metric.
    pub metric_name: String,
}

impl DryRun {
    /// Whether this entry names `metric_name`: the exact name, or the wildcard `*` / `.*`.
    /// (Argo matches `metricName` as an unanchored regular expression; Sluice accepts the exact name
    /// and the all-metrics wildcards, the forms its documentation uses.)
    pub fn applies_to(&self, metric_name: &str) -> bool {
        name_matches(&self.metric_name, metric_name)
    }
}

/// How many measurements of a metric to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRetention {
    /// Metric name; `*` or `.*` means every metric.
    pub metric_name: String,
    /// Measurements to keep.
    pub limit: i32,
}

impl MeasurementRetention {
    /// Whether this entry names `metric_name` (same matching as [`DryRun::applies_to`]).
    pub fn applies_to(&self, metric_name: &str) -> bool {
        name_matches(&self.metric_name, metric_name)
    }
}

fn name_matches(pattern: &str, metric_name: &str) -> bool {
    matches!(pattern, "*" | ".*") || pattern == metric_name
}

fn is_dry_run(entries: &[DryRun], metric_name: &str) -> bool {
    entries.iter().any(|d| d.applies_to(metric_name))
}

/// The limit of the entry naming the metric exactly, else of a wildcard entry, else the default.
fn measurement_retention_limit(entries: &[MeasurementRetention], metric_name: &str) -> i32 {
    entries
        .iter()
        .find(|r| r.metric_name == metric_name)
        .or_else(|| entries.iter().find(|r| r.applies_to(metric_name)))
        .map_or(DEFAULT_MEASUREMENT_RETENTION, |r| r.limit)
}

// ---------------------------------------------------------------------------------------------------
// AnalysisRun
// ---------------------------------------------------------------------------------------------------

/// An instantiated analysis: the metrics with their arguments resolved, measured until done.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sluice.dev",
    version = "v1alpha1",
    kind = "AnalysisRun",
    namespaced,
    shortname = "ar",
    status = "AnalysisRunStatus",
    derive = "PartialEq",
    doc = "An analysis in progress or done: metrics measured and judged, with the verdict in status.",
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.phase",
        description = "AnalysisRun status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunSpec {
    /// The metrics to measure (at most 100, as in a template).
    #[schemars(length(max = 100))]
    pub metrics: Vec<Metric>,
    /// The arguments used in this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    /// Stop measuring; a run terminated with nothing failing is Successful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminate: Option<bool>,
    /// Metrics measured and shown but never failing the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRun>,
    /// How many measurements to keep per metric (default 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurement_retention: Vec<MeasurementRetention>,
    /// Argo's `ttlStrategy`: kept as written, not implemented (the run is refused; see
    /// [`crate::api::unsupported`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::api::unsupported::preserved_object_schema")]
    pub ttl_strategy: Option<serde_json::Value>,
}

impl AnalysisRunSpec {
    /// The Argo fields set in this spec that Sluice does not implement (see
    /// [`crate::api::unsupported`]), as paths from the object's root.
    pub fn unsupported_fields(&self) -> Vec<String> {
        serde_json::to_value(self).map_or_else(
            |_| Vec::new(),
            |value| {
                crate::api::unsupported::set_paths(
                    &value,
                    "spec",
                    crate::api::unsupported::analysis_run_spec(),
                )
            },
        )
    }

    /// `terminate`, default false.
    pub fn is_terminated(&self) -> bool {
        self.terminate.unwrap_or(false)
    }

    /// Whether the metric named `metric_name` runs in dry-run mode (see [`DryRun::applies_to`]).
    pub fn is_dry_run(&self, metric_name: &str) -> bool {
        is_dry_run(&self.dry_run, metric_name)
    }

    /// How many measurements of `metric_name` to keep: an entry naming it, else a wildcard entry, else
    /// [`DEFAULT_MEASUREMENT_RETENTION`].
    pub fn measurement_retention_limit(&self, metric_name: &str) -> i32 {
        measurement_retention_limit(&self.measurement_retention, metric_name)
    }
}

impl From<AnalysisTemplateSpec> for AnalysisRunSpec {
    /// The run of a template, arguments not yet merged with the Rollout's.
    fn from(t: AnalysisTemplateSpec) -> Self {
        Self {
            metrics: t.metrics,
            args: t.args,
            terminate: None,
            dry_run: t.dry_run,
            measurement_retention: t.measurement_retention,
            ttl_strategy: None,
        }
    }
}

/// Phase of an AnalysisRun, a metric, or a single measurement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AnalysisPhase {
    /// Not started yet.
    #[default]
    Pending,
    /// Measuring.
    Running,
    /// Done, every condition met.
    Successful,
    /// Done, failed more than the failure limit allows.
    Failed,
    /// Done, the measurements kept erroring (e.g. the provider was unreachable).
    Error,
    /// Done, neither success nor failure could be decided.
    Inconclusive,
}

impl AnalysisPhase {
    /// Every phase, in declaration order.
    pub const ALL: [AnalysisPhase; 6] = [
        AnalysisPhase::Pending,
        AnalysisPhase::Running,
        AnalysisPhase::Successful,
        AnalysisPhase::Failed,
        AnalysisPhase::Error,
        AnalysisPhase::Inconclusive,
    ];

    /// Successful, Failed, Error and Inconclusive are final.
    pub fn is_completed(self) -> bool {
        matches!(
            self,
            AnalysisPhase::Successful
                | AnalysisPhase::Failed
                | AnalysisPhase::Error
                | AnalysisPhase::Inconclusive
        )
    }

    /// Rank used to combine phases: Successful < Running < Pending < Inconclusive < Error < Failed.
    pub fn severity(self) -> u8 {
        match self {
            AnalysisPhase::Successful => 0,
            AnalysisPhase::Running => 1,
            AnalysisPhase::Pending => 2,
            AnalysisPhase::Inconclusive => 3,
            AnalysisPhase::Error => 4,
            AnalysisPhase::Failed => 5,
        }
    }

    /// The worse of two phases (by [`severity`](Self::severity)).
    #[must_use]
    pub fn worst(self, other: AnalysisPhase) -> AnalysisPhase {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The worst of several phases; `None` for none.
    pub fn worst_of(phases: impl IntoIterator<Item = AnalysisPhase>) -> Option<AnalysisPhase> {
        phases.into_iter().reduce(AnalysisPhase::worst)
    }
}

api_enum_names!(AnalysisPhase {
    Pending,
    Running,
    Successful,
    Failed,
    Error,
    Inconclusive
});

/// Status of an AnalysisRun. Counters follow Argo's wire form: zero is omitted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRunStatus {
    /// Phase of the run; unset means Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AnalysisPhase>,
    /// Why the run is in its phase (e.g. which metric failed, with its value and condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// One entry per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_results: Vec<MetricResult>,
    /// Metric counts by final phase, over the metrics not in dry-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_summary: Option<RunSummary>,
    /// Metric counts by final phase, over the dry-run metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run_summary: Option<RunSummary>,
}

impl AnalysisRunStatus {
    /// `phase`, Pending when unset.
    pub fn phase(&self) -> AnalysisPhase {
        self.phase.unwrap_or_default()
    }

    /// The result of the metric named `name`.
    pub fn metric_result(&self, name: &str) -> Option<&MetricResult> {
        self.metric_results.iter().find(|r| r.name == name)
    }
}

/// Counts of metrics by phase.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successful: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error: i32,
}

/// The measurements and verdict of one metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub name: String,
    pub phase: AnalysisPhase,
    /// The most recent measurements (capped by `measurementRetention`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Measurements taken without error (successful + failed + inconclusive).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub successful: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive: i32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub error: i32,
    /// Errors in a row; reset by a measurement without error.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_error: i32,
    /// Successes in a row; reset by any other outcome.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_success: i32,
    /// Whether the metric runs in dry-run mode.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Provider data about the metric, e.g. the resolved query.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// One measurement of a metric.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub phase: AnalysisPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The measured value as text, e.g. `[0.97]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Provider data about the measurement, e.g. the resolved query.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// When to take the next measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<Time>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Test helper: checks the rules of a structural schema that a derive can break: every node has a `type`
/// (or is int-or-string / preserve-unknown-fields), no `$ref`, no `anyOf`/`oneOf`/`allOf`, enums of
/// strings only (no `null`), and `properties` never beside `additionalProperties`.
#[cfg(test)]
pub(crate) fn assert_structural(schema: &serde_json::Value, path: &str) {
    let obj = schema
        .as_object()
        .unwrap_or_else(|| panic!("{path}: not an object"));
    assert!(!obj.contains_key("$ref"), "{path}: $ref");
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        assert!(!obj.contains_key(key), "{path}: {key}");
    }
    let int_or_string =
        obj.get("x-kubernetes-int-or-string") == Some(&serde_json::Value::Bool(true));
    let preserve =
        obj.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
    assert!(
        obj.contains_key("type") || int_or_string || preserve,
        "{path}: no type"
    );
    if let Some(values) = obj.get("enum").and_then(serde_json::Value::as_array) {
        let string_typed = obj.get("type") == Some(&serde_json::Value::from("string"));
        assert!(
            string_typed && values.iter().all(serde_json::Value::is_string),
            "{path}: enum {values:?}"
        );
    }
    assert!(
        !(obj.contains_key("properties") && obj.contains_key("additionalProperties")),
        "{path}: properties beside additionalProperties"
    );
    if let Some(props) = obj.get("properties").and_then(serde_json::Value::as_object) {
        for (name, sub) in props {
            assert_structural(sub, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(additional) = obj.get("additionalProperties").filter(|a| a.is_object()) {
        assert_structural(additional, &format!("{path}{{}}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    use pretty_assertions::assert_eq;
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    const SUCCESS_RATE: &str =
        include_str!("../../tests/fixtures/analysis/success-rate-template.yaml");
    const ERROR_RATE: &str =
        include_str!("../../tests/fixtures/analysis/error-rate-cluster-template.yaml");
    const RUN: &str = include_str!("../../tests/fixtures/analysis/analysis-run.yaml");

    /// Parse `yaml` as `T`, serialize it back and compare with the YAML read as a generic value.
    fn round_trip<T: DeserializeOwned + Serialize>(yaml: &str) -> T {
        let generic: Value = serde_saphyr::from_str(yaml).unwrap();
        let typed: T = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), generic);
        typed
    }

    #[test]
    fn success_rate_template_round_trips() {
        let t: AnalysisTemplate = round_trip(SUCCESS_RATE);
        assert_eq!(t.spec.args.len(), 3);
        assert_eq!(t.spec.metrics[0].name, "success-rate");
        let prom = t.spec.metrics[0].provider.prometheus.as_ref().unwrap();
        assert!(prom.query.contains("{{args.service-name}}"));
        assert_eq!(
            t.spec.args[2]
                .value_from
                .as_ref()
                .unwrap()
                .pod_template_hash_value,
            Some(PodTemplateHashValue::Latest)
        );
    }

    #[test]
    fn error_rate_cluster_template_round_trips() {
        let t: ClusterAnalysisTemplate = round_trip(ERROR_RATE);
        // Deref to the shared spec.
        assert_eq!(t.spec.metrics.len(), 2);
        assert!(t.spec.is_dry_run("error-rate-scrape"));
        assert!(!t.spec.is_dry_run("error-rate"));
        let scrape = t.spec.metrics[1].provider.scrape.as_ref().unwrap();
        assert_eq!(scrape.metric, "http_requests_total");
        assert_eq!(scrape.timeout(), Duration::from_secs(5));
    }

    #[test]
    fn analysis_run_round_trips() {
        let run: AnalysisRun = round_trip(RUN);
        let status = run.status.as_ref().unwrap();
        assert_eq!(status.phase(), AnalysisPhase::Failed);
        let result = status.metric_result("success-rate").unwrap();
        assert_eq!(result.failed, 2);
        assert_eq!(result.measurements.len(), 3);
        assert_eq!(result.measurements[2].phase, AnalysisPhase::Failed);
        assert_eq!(
            status.run_summary,
            Some(RunSummary {
                count: 2,
                failed: 1,
                error: 1,
                ..RunSummary::default()
            })
        );
    }

    #[test]
    fn cluster_template_spec_is_the_template_spec_on_the_wire() {
        let spec = AnalysisTemplateSpec {
            metrics: vec![metric(
                json!({"name": "m", "provider": {"scrape": {"url": "u", "metric": "x"}}}),
            )],
            ..AnalysisTemplateSpec::default()
        };
        let cluster = ClusterAnalysisTemplateSpec::from(spec.clone());
        assert_eq!(
            serde_json::to_value(&cluster).unwrap(),
            serde_json::to_value(&spec).unwrap()
        );
        let schema = |crd: CustomResourceDefinition| {
            serde_json::to_value(crd).unwrap()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                .clone()
        };
        assert_eq!(
            schema(AnalysisTemplate::crd()),
            schema(ClusterAnalysisTemplate::crd())
        );
    }

    fn metric(v: Value) -> Metric {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn metric_defaults_are_argos() {
        let m = metric(json!({"name": "m", "provider": {"prometheus": {"query": "up"}}}));
        assert_eq!(m.failure_limit(), Ok(0));
        assert_eq!(m.inconclusive_limit(), Ok(0));
        assert_eq!(m.consecutive_error_limit(), Ok(4));
        assert_eq!(m.consecutive_success_limit(), Ok(0));
        assert_eq!(m.effective_count(), Ok(Some(1)));
        assert_eq!(m.interval(), Ok(None));
        assert_eq!(m.initial_delay(), Ok(None));
        let prom = m.provider.prometheus.as_ref().unwrap();
        assert_eq!(prom.timeout(), Duration::from_secs(30));
        assert!(!prom.insecure());
        // Serializing adds nothing the user did not write.
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            json!({"name": "m", "provider": {"prometheus": {"query": "up"}}})
        );
    }

    #[test]
    fn metric_values_int_or_string() {
        let m = metric(json!({
            "name": "m", "interval": "1m30s", "initialDelay": "30s", "count": "5",
            "failureLimit": -1, "inconclusiveLimit": "2", "consecutiveErrorLimit": 0,
            "consecutiveSuccessLimit": 3,
            "provider": {"prometheus": {"query": "up", "timeout": 0}}
        }));
        assert_eq!(m.effective_count(), Ok(Some(5)));
        assert_eq!(m.failure_limit(), Ok(-1));
        assert_eq!(m.inconclusive_limit(), Ok(2));
        assert_eq!(m.consecutive_error_limit(), Ok(0));
        assert_eq!(m.consecutive_success_limit(), Ok(3));
        assert_eq!(m.interval(), Ok(Some(Duration::from_secs(90))));
        assert_eq!(m.initial_delay(), Ok(Some(Duration::from_secs(30))));
        // A non-positive timeout falls back to the default.
        assert_eq!(
            m.provider.prometheus.unwrap().timeout(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn effective_count_follows_argo() {
        let with = |extra: Value| {
            let mut v = json!({"name": "m", "provider": {"prometheus": {"query": "up"}}});
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            metric(v).effective_count()
        };
        assert_eq!(with(json!({})), Ok(Some(1)));
        assert_eq!(with(json!({"interval": "10s"})), Ok(None));
        assert_eq!(with(json!({"interval": "10s", "count": 0})), Ok(None));
        assert_eq!(with(json!({"interval": "10s", "count": 3})), Ok(Some(3)));
        assert_eq!(with(json!({"count": 2})), Ok(Some(2)));
    }

    #[test]
    fn unresolved_values_are_errors() {
        let m = metric(json!({
            "name": "m", "interval": "soon", "failureLimit": "{{args.limit}}",
            "provider": {"prometheus": {"query": "up"}}
        }));
        assert_eq!(
            m.failure_limit(),
            Err(AnalysisSpecError::NotAnInteger {
                metric: "m".into(),
                field: "failureLimit",
                value: "{{args.limit}}".into(),
            })
        );
        let err = m.interval().unwrap_err();
        assert!(matches!(
            err,
            AnalysisSpecError::InvalidDuration {
                field: "interval",
                ..
            }
        ));
        assert!(err.to_string().contains("\"soon\""), "{err}");
        let negative = metric(json!({"name": "m", "initialDelay": "-5s", "provider": {}}));
        assert!(negative.initial_delay().is_err());
    }

    #[test]
    fn measurement_retention_and_dry_run_matching() {
        let spec: AnalysisRunSpec = serde_json::from_value(json!({
            "metrics": [],
            "dryRun": [{"metricName": "latency"}],
            "measurementRetention": [
                {"metricName": "*", "limit": 20},
                {"metricName": "error-rate", "limit": 3}
            ]
        }))
        .unwrap();
        assert!(spec.is_dry_run("latency"));
        assert!(!spec.is_dry_run("error-rate"));
        assert_eq!(spec.measurement_retention_limit("error-rate"), 3);
        assert_eq!(spec.measurement_retention_limit("latency"), 20);
        assert_eq!(
            AnalysisRunSpec::default().measurement_retention_limit("x"),
            10
        );
        assert!(!spec.is_terminated());
        let all = DryRun {
            metric_name: ".*".into(),
        };
        assert!(all.applies_to("anything"));
    }

    #[test]
    fn phase_ordering_is_scenario_a4() {
        use AnalysisPhase::*;
        let order = [Successful, Running, Pending, Inconclusive, Error, Failed];
        for (i, a) in order.iter().enumerate() {
            for (j, b) in order.iter().enumerate() {
                let expected = if i >= j { *a } else { *b };
                assert_eq!(a.worst(*b), expected, "{a} vs {b}");
            }
        }
        assert_eq!(
            AnalysisPhase::worst_of([Successful, Inconclusive, Running]),
            Some(Inconclusive)
        );
        assert_eq!(AnalysisPhase::worst_of([Error, Failed]), Some(Failed));
        assert_eq!(AnalysisPhase::worst_of([]), None);
        assert_eq!(AnalysisPhase::default(), Pending);
    }

    #[test]
    fn phase_completion_and_names() {
        use AnalysisPhase::*;
        for phase in AnalysisPhase::ALL {
            assert_eq!(
                phase.is_completed(),
                matches!(phase, Successful | Failed | Error | Inconclusive)
            );
            assert_eq!(
                serde_json::to_value(phase).unwrap(),
                json!(phase.to_string())
            );
        }
    }

    fn version(crd: &CustomResourceDefinition) -> Value {
        serde_json::to_value(&crd.spec.versions[0]).unwrap()
    }

    #[test]
    fn analysis_template_crds() {
        for (crd, scope, short) in [
            (AnalysisTemplate::crd(), "Namespaced", "at"),
            (ClusterAnalysisTemplate::crd(), "Cluster", "cat"),
        ] {
            assert_eq!(crd.spec.group, "sluice.dev");
            assert_eq!(crd.spec.scope, scope);
            assert_eq!(crd.spec.names.short_names, Some(vec![short.to_owned()]));
            let v = version(&crd);
            assert_eq!(v["name"], "v1alpha1");
            assert_eq!(v["subresources"], json!({"status": {}}));
            assert_eq!(
                v["additionalPrinterColumns"],
                json!([{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}])
            );
        }
        assert_eq!(
            ClusterAnalysisTemplate::crd().metadata.name.as_deref(),
            Some("clusteranalysistemplates.sluice.dev")
        );
    }

    #[test]
    fn analysis_run_crd() {
        let crd = AnalysisRun::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("analysisruns.sluice.dev")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "AnalysisRun");
        assert_eq!(crd.spec.names.short_names, Some(vec!["ar".to_owned()]));
        let v = version(&crd);
        assert_eq!(v["subresources"], json!({"status": {}}));
        let columns: Vec<(&str, &str)> = v["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
            .collect();
        assert_eq!(
            columns,
            [
                ("Status", ".status.phase"),
                ("Age", ".metadata.creationTimestamp")
            ]
        );
    }

    fn schema_of(crd: &CustomResourceDefinition) -> Value {
        version(crd)["schema"]["openAPIV3Schema"].clone()
    }

    #[test]
    fn schemas_are_structural() {
        for crd in [
            AnalysisTemplate::crd(),
            ClusterAnalysisTemplate::crd(),
            AnalysisRun::crd(),
        ] {
            super::assert_structural(&schema_of(&crd), "");
        }
    }

    #[test]
    fn schema_details() {
        let run = schema_of(&AnalysisRun::crd());
        let metric = &run["properties"]["spec"]["properties"]["metrics"]["items"];
        assert_eq!(metric["required"], json!(["name", "provider"]));
        for field in [
            "count",
            "failureLimit",
            "inconclusiveLimit",
            "consecutiveErrorLimit",
            "consecutiveSuccessLimit",
        ] {
            assert_eq!(
                metric["properties"][field]["x-kubernetes-int-or-string"], true,
                "{field}"
            );
        }
        let provider = &metric["properties"]["provider"];
        let rule = provider["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .unwrap();
        for name in ["prometheus", "scrape", "datadog", "job", "web", "newRelic"] {
            assert!(
                rule.contains(&format!("(has(self.{name}) ? 1 : 0)")),
                "{name}: {rule}"
            );
        }
        assert!(rule.ends_with(" == 1"), "{rule}");
        let prom = &provider["properties"]["prometheus"];
        assert_eq!(prom["properties"]["timeout"]["type"], "integer");
        assert_eq!(prom["properties"]["timeout"]["format"], "int64");
        assert!(prom["properties"]["authentication"]["x-kubernetes-validations"].is_array());
        let phases = json!([
            "Pending",
            "Running",
            "Successful",
            "Failed",
            "Error",
            "Inconclusive"
        ]);
        let status = &run["properties"]["status"]["properties"];
        assert_eq!(status["phase"]["enum"], phases);
        assert_eq!(status["phase"]["type"], "string");
        let result = &status["metricResults"]["items"];
        assert_eq!(result["properties"]["phase"]["enum"], phases);
        assert_eq!(
            result["properties"]["measurements"]["items"]["properties"]["phase"]["enum"],
            phases
        );
        let args = &run["properties"]["spec"]["properties"]["args"]["items"];
        assert!(args["x-kubernetes-validations"].is_array());
        let value_from = &args["properties"]["valueFrom"];
        assert!(value_from["x-kubernetes-validations"].is_array());
        assert_eq!(
            value_from["properties"]["podTemplateHashValue"]["enum"],
            json!(["Stable", "Latest"])
        );
        // No defaults in the schema: manifests round-trip as written.
        assert!(!serde_json::to_string(&run).unwrap().contains("\"default\""));
    }
}
