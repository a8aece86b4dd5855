//! The in-process rig the loopback benches share: the fake gateway on a runtime of its own (one
//! worker thread, so its CPU is apart from the clients'), and a current-thread runtime for the
//! clients measured.

use std::time::Duration;

use gateway_testkit::{FakeGateway, GatewayConfig, WorldConfig};
use tokio::runtime::Runtime;

/// The runtimes of one bench: the fake gateway's and the measured clients'.
pub(crate) struct Rig {
    /// The fake gateway's runtime: one worker thread.
    pub(crate) server: Runtime,
    /// The measured clients' runtime: the calling thread.
    pub(crate) clients: Runtime,
}

impl Rig {
    /// Both runtimes, with every driver enabled.
    pub(crate) fn new() -> Result<Self, String> {
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let clients = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { server, clients })
    }

    /// A fake gateway on the server runtime, with `world` and no identify window (the benches
    /// measure traffic, not Discord's pacing), on an ephemeral port.
    pub(crate) fn gateway(&self, world: WorldConfig) -> Result<FakeGateway, String> {
        self.server
            .block_on(FakeGateway::start_with(
                GatewayConfig {
                    world,
                    identify_window: Duration::ZERO,
                    ..GatewayConfig::default()
                },
                0,
            ))
            .map_err(|e| e.to_string())
    }
}
