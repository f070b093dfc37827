//! ResNet-18/34 with GroupNorm: shapes, parameter counts against torchvision, layout and
//! sample independence.

use bastion_dp::clip::Tape;
use bastion_models::per_sample_cross_entropy;
use bastion_models::resnet::{ResNet, ResNetConfig};
use bastion_models::ModelError;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn param_count(vs: &VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}

fn build(config: &ResNetConfig) -> (VarStore, ResNet) {
    let vs = VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), config).unwrap();
    (vs, model)
}

/// torchvision's `resnet18()` / `resnet34()` have 11,689,512 / 21,797,672 parameters at
/// 1000 classes; GroupNorm has BatchNorm's two affine vectors per channel (BatchNorm's
/// running statistics are buffers, not parameters).
#[test]
fn parameter_counts_equal_torchvision() {
    let (vs18, _) = build(&ResNetConfig::resnet18(1000));
    assert_eq!(param_count(&vs18), 11_689_512);
    let (vs34, _) = build(&ResNetConfig::resnet34(1000));
    assert_eq!(param_count(&vs34), 21_797_672);
    // The classifier is the only part that depends on the class count: 512 * k + k.
    let (vs18_2, _) = build(&ResNetConfig::resnet18(2));
    assert_eq!(param_count(&vs18_2), 11_689_512 - 998 * 513);
}

#[test]
fn variable_names_follow_torchvision() {
    let (vs, _) = build(&ResNetConfig::resnet34(10));
    let vars = vs.variables();
    let shape = |name: &str| {
        vars.get(name)
            .unwrap_or_else(|| panic!("no variable {name}"))
            .size()
    };
    assert_eq!(shape("conv1.weight"), [64, 3, 7, 7]);
    assert_eq!(shape("bn1.weight"), [64]);
    assert_eq!(shape("layer1.2.conv2.weight"), [64, 64, 3, 3]);
    assert_eq!(shape("layer2.0.downsample.0.weight"), [128, 64, 1, 1]);
    assert_eq!(shape("layer2.0.downsample.1.bias"), [128]);
    assert_eq!(shape("layer3.5.bn2.weight"), [256]);
    assert_eq!(shape("layer4.2.conv1.weight"), [512, 512, 3, 3]);
    assert_eq!(shape("fc.weight"), [10, 512]);
    assert_eq!(shape("fc.bias"), [10]);
    assert!(!vars.contains_key("layer1.0.downsample.0.weight"));
    assert!(!vars.contains_key("layer4.3.conv1.weight"));
    assert!(!vars.contains_key("conv1.bias"));
    // 1 stem conv + 2 per block + 3 downsampling convs, each followed by a norm.
    let convs = vars
        .keys()
        .filter(|k| k.ends_with(".weight") && vars[*k].dim() == 4)
        .count();
    assert_eq!(convs, 1 + 2 * (3 + 4 + 6 + 3) + 3);
}

#[test]
fn output_shapes_for_several_inputs_and_class_counts() {
    for (config, h, w, classes) in [
        (ResNetConfig::resnet18(10), 32, 32, 10),
        (ResNetConfig::resnet18(2), 64, 48, 2),
        (ResNetConfig::resnet34(7), 32, 40, 7),
        (ResNetConfig::resnet34(1000), 224, 224, 1000),
    ] {
        let (_vs, model) = build(&config);
        let images = Tensor::randn([2, 3, h, w], (Kind::Float, Device::Cpu));
        let logits = tch::no_grad(|| model.forward(&Tape::disabled(), &images));
        assert_eq!(logits.size(), [2, classes], "{h}x{w}");
        assert!(bool::try_from(logits.isfinite().all()).unwrap());
    }
}

#[test]
fn single_channel_input() {
    let config = ResNetConfig {
        in_channels: 1,
        ..ResNetConfig::resnet18(9)
    };
    let (_vs, model) = build(&config);
    let images = Tensor::randn([3, 1, 28, 28], (Kind::Float, Device::Cpu));
    let logits = tch::no_grad(|| model.forward(&Tape::disabled(), &images));
    assert_eq!(logits.size(), [3, 9]);
}

/// No batch statistics: each sample's logits are what it gets alone.
#[test]
fn samples_are_independent() {
    let (_vs, model) = build(&ResNetConfig::resnet18(5));
    let images = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let batch = tch::no_grad(|| model.forward(&Tape::disabled(), &images));
    for i in 0..4 {
        let alone = tch::no_grad(|| model.forward(&Tape::disabled(), &images.narrow(0, i, 1)));
        let diff = (alone - batch.narrow(0, i, 1))
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "sample {i}: {diff}");
    }
}

#[test]
fn recording_tape_records_every_parameterised_layer() {
    let (_vs, model) = build(&ResNetConfig::resnet18(3));
    let images = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let tape = Tape::new();
    let recorded = model.forward(&tape, &images);
    // 20 convolutions, 20 norms, 1 linear.
    assert_eq!(tape.len(), 41);
    let disabled = Tape::disabled();
    let plain = model.forward(&disabled, &images);
    assert!(disabled.is_empty());
    assert!(recorded.equal(&plain));
}

#[test]
fn per_sample_cross_entropy_is_per_sample() {
    let logits = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0, 3.0, 1.0]).view([2, 3]);
    let labels = Tensor::from_slice(&[0i64, 2]);
    let loss = per_sample_cross_entropy(&logits, &labels);
    assert_eq!(loss.size(), [2]);
    let expected = [
        -(2f64.exp() / (2f64.exp() + 2.0)).ln(),
        -(1f64.exp() / (1.0 + 3f64.exp() + 1f64.exp())).ln(),
    ];
    for (i, e) in expected.iter().enumerate() {
        assert!((loss.double_value(&[i as i64]) - e).abs() < 1e-6);
    }
}

#[test]
fn invalid_configs_are_refused() {
    let bad = [
        (
            ResNetConfig {
                blocks: [2, 0, 2, 2],
                ..ResNetConfig::resnet18(10)
            },
            "blocks",
        ),
        (ResNetConfig::resnet18(0), "num_classes"),
        (
            ResNetConfig {
                max_norm_groups: 24,
                ..ResNetConfig::resnet18(10)
            },
            "max_norm_groups",
        ),
        (
            ResNetConfig {
                norm_eps: 0.0,
                ..ResNetConfig::resnet18(10)
            },
            "norm_eps",
        ),
    ];
    for (config, field) in bad {
        let vs = VarStore::new(Device::Cpu);
        match ResNet::new(&vs.root(), &config) {
            Err(ModelError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected InvalidConfig, got {other:?}"),
        }
        assert!(vs.variables().is_empty());
    }
}

#[test]
fn config_serde_defaults_and_unknown_fields() {
    let config: ResNetConfig =
        serde_json::from_str(r#"{"blocks": [3, 4, 6, 3], "num_classes": 9}"#).unwrap();
    assert_eq!(config, ResNetConfig::resnet34(9));
    let err = serde_json::from_str::<ResNetConfig>(
        r#"{"blocks": [2, 2, 2, 2], "num_classes": 9, "batch_norm": true}"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown field `batch_norm`"),
        "{err}"
    );
}
