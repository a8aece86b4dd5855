//! The member chunk tracker.
mod tracker;

pub use tracker::{
    ChunkEvent, ChunkRequestFinished, FULL_REQUEST_INTERVAL, Outcome, TrackError, Tracker, TrackerConfig,
};
