//! The node's metrics, through the `metrics` facade (install any recorder, e.g. Prometheus's).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `gateway_events_total` | counter | `event` (dispatch name, or READY, RESUMED) |
//! | `gateway_disconnects_total` | counter | `code`, `next` (resume, reidentify, stop) |
//! | `gateway_identifies_total` | counter | — |
//! | `gateway_identify_paused_total` | counter | — |
//! | `gateway_heartbeat_latency_seconds` | histogram | — |
//! | `gateway_member_requests_dropped_total` | counter | — |
//! | `gateway_lease_changes_total` | counter | `change` (taken, lost, released) |
//! | `gateway_shards_held` | gauge | — |
//! | `gateway_published_total` (entries new to the stream), `gateway_publish_repeats_skipped_total` (there already: a resume's replay), `gateway_publish_fenced_total` (refused: another node holds the shard under a later lease), `gateway_publish_retries_total` | counter | — |
//! | `gateway_publish_lag_seconds` | histogram | — (queued to written) |
//! | `gateway_consumer_repeats_total` | counter | — |
//!
//! With gateway-shard's `metrics` feature (on here), each shard also reports
//! `gateway_bytes_received_total` (websocket bytes, compressed as they came),
//! `gateway_data_bytes_decoded_total` (the `d` of each payload, decompressed),
//! `gateway_decode_seconds` (histogram: one websocket message decoded and handled by the session), `gateway_identify_wait_seconds` (histogram, time in the
//! identify queue) and `gateway_command_queue_depth` (gauge, by `shard`); with
//! gateway-chunking's, `gateway_chunk_requests_total` by `outcome`.

use gateway_shard::{Reconnect, ShardEvent};

/// Counts one shard event.
pub(crate) fn shard_event(_shard: u32, event: &ShardEvent) {
    match event {
        ShardEvent::Dispatch(d) => {
            metrics::counter!("gateway_events_total", "event" => d.event.name().to_owned())
                .increment(1);
        }
        ShardEvent::Ready(_) => {
            metrics::counter!("gateway_events_total", "event" => "READY").increment(1);
            metrics::counter!("gateway_identifies_total").increment(1);
        }
        ShardEvent::Resumed { .. } => {
            metrics::counter!("gateway_events_total", "event" => "RESUMED").increment(1);
        }
        ShardEvent::HeartbeatAck { latency } => {
            metrics::histogram!("gateway_heartbeat_latency_seconds").record(latency.as_secs_f64());
        }
        ShardEvent::Disconnected { code, next, .. } => {
            let code = code.map_or_else(|| "none".to_owned(), |c| c.to_string());
            let next = match next {
                Reconnect::Resume => "resume",
                Reconnect::Reidentify => "reidentify",
                _ => "stop",
            };
            metrics::counter!("gateway_disconnects_total", "code" => code, "next" => next)
                .increment(1);
        }
        ShardEvent::IdentifyPaused { .. } => {
            metrics::counter!("gateway_identify_paused_total").increment(1);
        }
        ShardEvent::MemberRequestsDropped { count } => {
            metrics::counter!("gateway_member_requests_dropped_total").increment(*count as u64);
        }
        _ => {}
    }
}
