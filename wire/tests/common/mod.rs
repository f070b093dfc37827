//! A realistic control message, shared by the wire tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Role {
    Supervisor,
    Trainer { gpu: Option<u8> },
    DataShard,
}

/// Shaped like the actors' messages: strings, floats, options, sequences, maps, bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) enum Control {
    Hello {
        node: String,
        role: Role,
        version: u16,
    },
    Step {
        step: u64,
        q: f64,
        sigma: f64,
        clip: f32,
        datasets: Vec<String>,
    },
    Shard {
        rank: u32,
        ids: Vec<u64>,
    },
    Heartbeat,
    Abort {
        step: Option<u64>,
        reason: String,
    },
    Blob(Vec<u8>),
    Budgets(BTreeMap<String, (f64, f64)>),
}

pub(crate) fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Supervisor),
        any::<Option<u8>>().prop_map(|gpu| Role::Trainer { gpu }),
        Just(Role::DataShard),
    ]
}

/// Finite floats only, so that `==` is a fair round-trip check.
pub(crate) fn control() -> impl Strategy<Value = Control> {
    let f = || -1e300f64..1e300;
    prop_oneof![
        (".{0,40}", role(), any::<u16>()).prop_map(|(node, role, version)| Control::Hello {
            node,
            role,
            version
        }),
        (
            any::<u64>(),
            f(),
            f(),
            -1e30f32..1e30,
            prop::collection::vec(".{0,12}", 0..5)
        )
            .prop_map(|(step, q, sigma, clip, datasets)| Control::Step {
                step,
                q,
                sigma,
                clip,
                datasets
            }),
        (any::<u32>(), prop::collection::vec(any::<u64>(), 0..200))
            .prop_map(|(rank, ids)| Control::Shard { rank, ids }),
        Just(Control::Heartbeat),
        (any::<Option<u64>>(), ".{0,80}")
            .prop_map(|(step, reason)| Control::Abort { step, reason }),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(Control::Blob),
        prop::collection::btree_map(".{0,8}", (f(), f()), 0..6).prop_map(Control::Budgets),
    ]
}

pub(crate) fn sample() -> Vec<Control> {
    vec![
        Control::Hello {
            node: "node-0".into(),
            role: Role::Trainer { gpu: Some(3) },
            version: 1,
        },
        Control::Step {
            step: 41,
            q: 0.001,
            sigma: 1.1,
            clip: 1.0,
            datasets: vec!["hospital-a".into(), "hospital-b".into()],
        },
        Control::Shard {
            rank: 2,
            ids: (0..1000).collect(),
        },
        Control::Heartbeat,
        Control::Abort {
            step: None,
            reason: "peer node-2 left".into(),
        },
        Control::Blob(vec![0xAB; 100_000]),
        Control::Budgets([("a".to_string(), (1.5, 1e-6))].into_iter().collect()),
    ]
}
