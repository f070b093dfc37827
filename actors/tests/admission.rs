//! The Supervisor's admission: a node whose datasets do not fit the job (another record
//! shape, class count or vocabulary) is refused, naming the dataset and both shapes, while a
//! node that fits is admitted. Real actors and a real ledger, no network.

use bastion_actors::accountant::Accountant;
use bastion_actors::config::Timeouts;
use bastion_actors::job::JobSpec;
use bastion_actors::protocol::{DatasetInfo, Join, Task, ToNode};
use bastion_actors::supervisor::{MemberAttestation, Supervisor, SupervisorArgs, SupervisorMsg};
use bastion_attestation::tls::{AttestError, Attester, Binding, Evidence};
use bastion_ledger::{AccountantKind, Ledger};
use bastion_metrics::NodeMetrics;
use ractor::Actor;
use tokio::sync::{mpsc, oneshot};

/// No job ends here, so no receipt is signed.
struct NoReceipts;

impl Attester for NoReceipts {
    fn attest(&self, _: &Binding) -> Result<Evidence, AttestError> {
        Err(AttestError {
            reason: "this test signs no receipt".into(),
        })
    }
}

fn join(node: &str, dataset: &str, shape: &str) -> Join {
    Join {
        node: node.into(),
        ring_addr: "127.0.0.1:1".into(),
        datasets: vec![DatasetInfo {
            name: dataset.into(),
            records: 100,
            epsilon_budget: 8.0,
            delta: 1e-5,
            shape: shape.into(),
            content_sha256: String::new(),
            owner: None,
        }],
        checkpoints: Vec::new(),
    }
}

#[tokio::test]
async fn a_node_whose_data_does_not_fit_the_job_is_refused() {
    let dir = std::env::temp_dir().join(format!("bastion-admission-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ledger, _) =
        Ledger::open(dir.join("privacy.ledger"), AccountantKind::Pld, &[7u8; 32]).unwrap();
    let metrics = NodeMetrics::new("node-0", 0, "coordinator").unwrap();
    let (accountant, _) = Actor::spawn(None, Accountant, (ledger, metrics.clone()))
        .await
        .unwrap();
    // The job's task: RGB 32x32 tiles, two classes. Three nodes are expected, so nothing
    // starts while this test admits two.
    let task = Task::Classify {
        depth: 18,
        classes: vec!["benign".into(), "malignant".into()],
        image_size: 32,
        channels: 3,
    };
    let job = JobSpec::parse("[schedule]\nnodes = 3", "job.toml").unwrap();
    let (done, _report) = oneshot::channel();
    let (supervisor, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            job,
            job_id: "job-1".into(),
            job_shape: task.data_shape(),
            coordinator: "node-0".into(),
            release_dir: dir.join("release"),
            timeouts: Timeouts::default(),
            accountant,
            metrics,
            simulated_tee: true,
            receipt_attester: std::sync::Arc::new(NoReceipts),
            done,
        },
    )
    .await
    .unwrap();
    let admit = |j: Join| {
        let supervisor = supervisor.clone();
        async move {
            let (link, _rx) = mpsc::unbounded_channel::<ToNode>();
            supervisor
                .call(
                    |reply| SupervisorMsg::Joined {
                        join: j,
                        key: "ff".repeat(32),
                        attestation: MemberAttestation {
                            measurement: [1; 48],
                            chip_id: [2; 64],
                            simulated: true,
                        },
                        link,
                        reply,
                    },
                    None,
                )
                .await
                .unwrap()
                .unwrap()
        }
    };
    // Grayscale tiles of another size, three classes: what a node with the wrong file says.
    let other = Task::Classify {
        depth: 18,
        classes: vec!["a".into(), "b".into(), "c".into()],
        image_size: 28,
        channels: 1,
    };
    let refused = admit(join("node-1", "hospital-b", &other.data_shape()))
        .await
        .unwrap_err();
    assert!(
        refused.contains("hospital-b")
            && refused.contains(&other.data_shape())
            && refused.contains(&task.data_shape()),
        "{refused}"
    );
    // Text where the job wants images.
    let text = "tokens 64 per record, vocabulary 50257";
    let refused = admit(join("node-2", "company-c", text)).await.unwrap_err();
    assert!(
        refused.contains("company-c") && refused.contains(text),
        "{refused}"
    );
    // A node that fits is admitted.
    admit(join("node-1", "hospital-b", &task.data_shape()))
        .await
        .unwrap();
    supervisor.stop(None);
    let _ = std::fs::remove_dir_all(&dir);
}
