//! The DataShard actor: one data owner's records, held inside this node, and each step's
//! Poisson sample of them. Records only ever leave this actor as tensors handed to the local
//! Trainer; nothing here touches the network.

use crate::data::{Batch, Records};
use bastion_dp::sampling::PoissonSampler;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Messages to a DataShard.
pub enum ShardMsg {
    /// Draw step `step`'s Poisson sample with rate `q`.
    Sample {
        /// Training step (seeds the sampler in deterministic test runs only).
        step: u64,
        /// Sampling rate.
        q: f64,
        /// Test-only: a sampler seeded from (dataset, step) instead of the OS.
        deterministic: bool,
        /// Where the batch goes.
        reply: RpcReplyPort<Result<Option<Batch>, String>>,
    },
}

/// The actor.
pub struct DataShard;

/// Its state.
pub struct ShardState {
    name: String,
    records: Records,
}

impl Actor for DataShard {
    type Msg = ShardMsg;
    type State = ShardState;
    type Arguments = (String, Records);

    async fn pre_start(
        &self,
        _myself: ActorRef<ShardMsg>,
        (name, records): (String, Records),
    ) -> Result<ShardState, ActorProcessingErr> {
        tracing::info!(dataset = %name, records = records.len(), "data shard loaded");
        Ok(ShardState { name, records })
    }

    async fn handle(
        &self,
        _myself: ActorRef<ShardMsg>,
        msg: ShardMsg,
        state: &mut ShardState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ShardMsg::Sample {
                step,
                q,
                deterministic,
                reply,
            } => {
                let result = sample(state, step, q, deterministic);
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

fn sample(
    state: &ShardState,
    step: u64,
    q: f64,
    deterministic: bool,
) -> Result<Option<Batch>, String> {
    let mut sampler = if deterministic {
        PoissonSampler::danger_seeded_for_tests(q, test_seed(&state.name, step))
    } else {
        PoissonSampler::from_os(q)
    }
    .map_err(|e| format!("dataset {}: {e}", state.name))?;
    let indices = sampler.sample(state.records.len());
    Ok((!indices.is_empty()).then(|| state.records.batch(&indices)))
}

/// The test-only sampling seed of `dataset` at `step`: the same on whichever node holds it.
fn test_seed(dataset: &str, step: u64) -> u64 {
    // FNV-1a: stable across processes and builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dataset.bytes().chain(step.to_le_bytes()) {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
