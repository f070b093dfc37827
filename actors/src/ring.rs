//! The Trainer's view of the ring: formed from a [`GroupPlan`] over attested TLS.

use crate::protocol::GroupPlan;
use bastion_attestation::tls::AttestedEndpoint;
use bastion_collective::{form_ring, Ring, RingConfig, RingSpec};
use std::time::Duration;
use tokio::net::TcpListener;

/// This node's link in the group's ring.
pub struct RingLink {
    ring: Ring,
    node: String,
}

/// Connects to the next rank and accepts the previous one, as the plan says.
pub async fn connect_ring(
    endpoint: &AttestedEndpoint,
    listener: &TcpListener,
    plan: &GroupPlan,
    connect_timeout: Duration,
    io_timeout: Duration,
) -> Result<RingLink, String> {
    let world = plan.members.len();
    let rank = plan.rank as usize;
    if rank >= world {
        return Err(format!("rank {rank} outside a group of {world}"));
    }
    let next = &plan.members[(rank + 1) % world];
    let prev = &plan.members[(rank + world - 1) % world];
    let spec = RingSpec {
        rank,
        world,
        epoch: plan.epoch,
        next_addr: next
            .1
            .parse()
            .map_err(|e| format!("ring address {:?} of {}: {e}", next.1, next.0))?,
        next_key: next.2.clone(),
        prev_key: prev.2.clone(),
    };
    let config = RingConfig {
        io_timeout,
        connect_timeout,
        ..RingConfig::default()
    };
    // Neighbours get the same Form at slightly different moments; one still finishing the
    // previous incarnation answers with an older epoch. Retry until the deadline.
    let deadline = tokio::time::Instant::now() + connect_timeout;
    loop {
        match form_ring(endpoint, listener, &spec, config.clone()).await {
            Ok(ring) => {
                return Ok(RingLink {
                    ring,
                    node: plan.members[rank].0.clone(),
                })
            }
            Err(e) if tokio::time::Instant::now() + Duration::from_millis(200) < deadline => {
                tracing::debug!(epoch = plan.epoch, error = %e, "ring not formed yet; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("forming the ring (epoch {}): {e}", plan.epoch)),
        }
    }
}

impl RingLink {
    /// Sums `data` over the group in place (bitwise identical on every node); returns the
    /// bytes this node sent.
    pub async fn all_reduce(&mut self, tag: u64, data: &mut [f32]) -> Result<u64, String> {
        if crate::tap::enabled() {
            // What this node contributes: every byte it sends is a function of these (its
            // chunks, partial sums of them, and the final sum).
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            crate::tap::record(&self.node, "ring", &bytes);
        }
        let stats = self
            .ring
            .all_reduce(tag, data)
            .await
            .map_err(|e| format!("all-reduce of step {tag}: {e}"))?;
        Ok(stats.bytes_sent)
    }
}
