//! `ListMetricValues`: the stored datapoints of one metric of one thing in a time range, as
//! Device Defender returns them (`metricDatumList[{timestamp, value: MetricValue}]`).
//!
//! `startTime` and `endTime` arrive as ISO 8601 query parameters (botocore's rest-json default);
//! the range is `[startTime, endTime)`. A dimension selects the series kept for that dimension;
//! Warden keeps datapoints for the `IN` reading of a dimension only, so `NOT_IN` is refused
//! rather than answered with the wrong series.

use axum::extract::State;
use serde_json::json;
use warden_store::{DatapointQuery, MetricDatum};

use super::protocol::{ApiError, ApiResult, PageStyle, Paging, Query, check_name, epoch_seconds};
use crate::state::AppState;

pub async fn list_metric_values(State(s): State<AppState>, mut q: Query) -> ApiResult {
    let paging = Paging::from_query(&mut q, PageStyle::Token)?;
    let thing = q.required("thingName")?;
    let metric = q.required("metricName")?;
    let dimension = q.take("dimensionName");
    let operator = q.take("dimensionValueOperator");
    let start_ms = q.timestamp_ms("startTime")?;
    let end_ms = q.timestamp_ms("endTime")?;
    q.finish()?;
    check_name("thingName", &thing)?;
    if !(1..=128).contains(&metric.len()) {
        return Err(ApiError::invalid("metricName must be 1 to 128 characters"));
    }
    if let Some(dimension) = &dimension {
        check_name("dimensionName", dimension)?;
    }
    match operator.as_deref() {
        None | Some("IN") => {}
        Some("NOT_IN") => return Err(ApiError::invalid("dimensionValueOperator NOT_IN is not supported")),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "dimensionValueOperator must be IN or NOT_IN, not {other:?}"
            )));
        }
    }
    if start_ms > end_ms {
        return Err(ApiError::invalid("startTime must not be after endTime"));
    }
    let query = DatapointQuery { thing, metric, dimension, start_ms, end_ms };
    let page = s.store.query_datapoints(&query, &paging.request).await?;
    paging.reply(
        "metricDatumList",
        page,
        |d: MetricDatum| json!({ "timestamp": epoch_seconds(d.timestamp_ms), "value": d.value }),
    )
}
