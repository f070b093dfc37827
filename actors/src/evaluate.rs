//! The end of a job: the model as it stands, evaluated on the model owner's held-out data
//! (never a party's records), and released in the formats users' tools load.

use crate::job::EvalSpec;
use crate::model::{Model, Net};
use crate::protocol::{Evaluation, Task};
use crate::trainer::JobContext;
use bastion_dp::clip::Tape;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// Records per forward pass when evaluating.
const EVAL_BATCH: usize = 64;

/// The model owner's held-out set, loaded for the job's task.
fn held_out(spec: &EvalSpec, job: &JobContext) -> Result<crate::data::Records, String> {
    let source = crate::node::source(
        "[eval]",
        &spec.format,
        spec.path.clone(),
        spec.field.clone(),
        spec.split.as_deref(),
        crate::data::Split::Test,
        (spec.records, spec.seed),
    )?;
    let expect = crate::node::expectation(
        &job.offer.task,
        job.tokenizer.as_deref().map(|t| t.as_slice()),
    )?;
    crate::data::load_dataset(&source, &expect).map_err(|e| format!("[eval]: {e}"))
}

/// A released classifier (`model.safetensors` and `config.json` as [`release`] writes
/// them, in `dir`) on `data`: accuracy and ROC AUC.
pub fn evaluate_released(
    dir: &std::path::Path,
    data: &crate::data::DataSource,
) -> Result<Evaluation, String> {
    let config_path = dir.join("config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;
    #[derive(serde::Deserialize)]
    struct Released {
        kind: String,
        depth: u32,
        classes: Vec<String>,
        image_size: i64,
        channels: i64,
    }
    let r: Released =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", config_path.display()))?;
    if r.kind != "resnet" {
        return Err(format!(
            "{}: kind {:?}; `model eval` takes a released classifier",
            config_path.display(),
            r.kind
        ));
    }
    let task = Task::Classify {
        depth: r.depth,
        classes: r.classes.clone(),
        image_size: r.image_size,
        channels: r.channels,
    };
    let model = Model::for_loading(&task)?;
    let weights_path = dir.join("model.safetensors");
    let weights =
        std::fs::read(&weights_path).map_err(|e| format!("{}: {e}", weights_path.display()))?;
    model
        .load_weights(&weights, true)
        .map_err(|e| format!("{}: {e}", weights_path.display()))?;
    let expect = crate::data::DataExpectation::Images {
        classes: crate::data::ClassSpec::Names(r.classes),
        image_size: r.image_size,
        channels: r.channels,
    };
    let set = crate::data::load_dataset(data, &expect).map_err(|e| e.to_string())?;
    classification(&model, &set)
}

/// Accuracy and AUC of a classifier on `set`.
fn classification(model: &Model, set: &crate::data::Records) -> Result<Evaluation, String> {
    let (probabilities, labels) = tch::no_grad(|| class_probabilities(model, set))?;
    let predicted = probabilities.argmax(-1, false);
    let correct = predicted
        .eq_tensor(&labels)
        .sum(Kind::Int64)
        .int64_value(&[]);
    Ok(Evaluation {
        records: set.len() as u64,
        test_accuracy: Some(correct as f64 / set.len().max(1) as f64),
        auc: crate::auc::classification_auc(&probabilities, &labels),
        ..Evaluation::default()
    })
}

/// Accuracy and AUC (classification) or perplexity before and after (language models).
pub fn evaluate(model: &Model, job: &JobContext) -> Result<Evaluation, String> {
    let spec = job.eval.as_ref().ok_or("this job has no [eval] data")?;
    let set = held_out(spec, job)?;
    let n = set.len();
    let mut out = Evaluation {
        records: n as u64,
        ..Evaluation::default()
    };
    match &model.net {
        Net::Classifier(_) => return classification(model, &set),
        Net::Lm(_) => {
            out.perplexity_after = Some(tch::no_grad(|| perplexity(model, &set))?);
            let initial = Model::for_loading_on(&job.offer.task, model.device())?;
            initial.load_weights(&job.weights, true)?;
            out.perplexity_before = Some(tch::no_grad(|| perplexity(&initial, &set))?);
        }
    }
    Ok(out)
}

/// Softmax outputs `(N, K)` and labels `(N,)` of a classifier over `set`.
fn class_probabilities(
    model: &Model,
    set: &crate::data::Records,
) -> Result<(Tensor, Tensor), String> {
    let mut probs = Vec::new();
    let mut labels = Vec::new();
    let all: Vec<usize> = (0..set.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        match set.batch(chunk) {
            crate::data::Batch::Images { images, labels: l } => {
                let Net::Classifier(m) = &model.net else {
                    return Err("not a classifier".into());
                };
                // Records go to the model's device; the outputs come back for the AUC.
                probs.push(
                    m.forward(&Tape::disabled(), &images.to_device(model.device()))
                        .softmax(-1, Kind::Float)
                        .to_device(tch::Device::Cpu),
                );
                labels.push(l);
            }
            _ => return Err("the held-out set is not images".into()),
        }
    }
    Ok((Tensor::cat(&probs, 0), Tensor::cat(&labels, 0)))
}

/// exp of the mean next-token cross-entropy over every predicted token of `set`.
fn perplexity(model: &Model, set: &crate::data::Records) -> Result<f64, String> {
    let Net::Lm(m) = &model.net else {
        return Err("not a language model".into());
    };
    let (mut total, mut count) = (0f64, 0f64);
    let all: Vec<usize> = (0..set.len()).collect();
    for chunk in all.chunks(EVAL_BATCH) {
        let crate::data::Batch::Tokens { ids, mask } = set.batch(chunk).to_device(model.device())
        else {
            return Err("the held-out set is not text".into());
        };
        let logits = m.forward_masked(&Tape::disabled(), &ids, Some(&mask));
        let t = ids.size()[1];
        let log_probs = logits.narrow(1, 0, t - 1).log_softmax(-1, Kind::Float);
        let targets = ids.narrow(1, 1, t - 1).unsqueeze(-1);
        let nll = log_probs.gather(-1, &targets, false).squeeze_dim(-1).neg();
        // A prediction counts when both the position and the next token are real.
        let valid = (mask.narrow(1, 0, t - 1) * mask.narrow(1, 1, t - 1)).to_kind(Kind::Float);
        total += (nll * &valid).sum(Kind::Double).double_value(&[]);
        count += valid.sum(Kind::Double).double_value(&[]);
    }
    if count == 0.0 {
        return Err("the held-out set has no token to predict".into());
    }
    Ok((total / count).exp())
}

/// Writes the released model into the job's release directory: GPT-2 in Hugging Face's
/// layout (`config.json`, `model.safetensors` with any LoRA merged, `tokenizer.json`; with
/// LoRA the adapter in PEFT's layout in `adapter/`, apart from the merged weights, which
/// transformers with PEFT installed would otherwise load it on top of), ResNet as
/// `model.safetensors` with a `config.json` naming its task.
pub fn release(model: &Model, job: &JobContext) -> Result<PathBuf, String> {
    let dir = job.release_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    match (&model.net, &job.offer.task) {
        (
            Net::Classifier(_),
            Task::Classify {
                depth,
                classes,
                image_size,
                channels,
            },
        ) => {
            write("model.safetensors", &model.to_bytes()?)?;
            let config = serde_json::json!({
                "kind": "resnet",
                "depth": depth,
                "classes": classes,
                "image_size": image_size,
                "channels": channels,
                "norm": "group",
            });
            write(
                "config.json",
                serde_json::to_string_pretty(&config)
                    .map_err(|e| e.to_string())?
                    .as_bytes(),
            )?;
        }
        (Net::Lm(m), Task::CausalLm { lora, base, .. }) => {
            m.save(&dir).map_err(|e| e.to_string())?;
            if lora.is_some() {
                m.save_adapter(&dir.join("adapter"), base)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(tokenizer) = &job.tokenizer {
                write("tokenizer.json", tokenizer)?;
            }
        }
        _ => return Err("the model does not fit the task".into()),
    }
    Ok(dir)
}
