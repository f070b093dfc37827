//! The flat gradient buffer and the DP step's noise and averaging.

use bastion_dp::noise::NoiseError;
use bastion_dp::optim::{add_noise, average, flatten, unflatten, DpSettings, GaussianNoise};
use tch::{Kind, Tensor};

fn grads() -> Vec<Tensor> {
    vec![
        Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([2, 3]),
        Tensor::from_slice(&[10f32]),
        Tensor::arange(24, (Kind::Float, tch::Device::Cpu)).view([2, 3, 4]) * -0.5,
    ]
}

#[test]
fn flatten_then_unflatten_is_the_identity() {
    let original = grads();
    let flat = flatten(grads()).unwrap();
    assert_eq!(flat.len(), 6 + 1 + 24);
    assert_eq!(&flat[..7], &[0., 1., 2., 3., 4., 5., 10.]);
    assert_eq!(flat[7 + 5], -2.5);
    let back = unflatten(flat.clone(), &original).unwrap();
    for (a, b) in original.iter().zip(&back) {
        assert_eq!(a.size(), b.size());
        assert!(a.equal(b));
    }
    // A non-contiguous gradient (a transposed view) flattens in its logical order.
    let t = Tensor::arange(6, (Kind::Float, tch::Device::Cpu))
        .view([2, 3])
        .tr();
    assert_eq!(flatten(vec![t]).unwrap(), vec![0., 3., 1., 4., 2., 5.]);
}

#[test]
fn unflatten_refuses_a_buffer_of_the_wrong_length() {
    let err = unflatten(vec![0f32; 30], &grads()).unwrap_err().to_string();
    assert!(err.contains("30") && err.contains("31"), "{err}");
}

/// Adds exactly `std` to every value, so the test sees which std the step asked for.
struct AddStd;
impl GaussianNoise for AddStd {
    fn add_noise(&mut self, values: &mut [f32], std: f64) -> Result<(), NoiseError> {
        values.iter_mut().for_each(|v| *v += std as f32);
        Ok(())
    }
}

#[test]
fn each_node_adds_its_share_and_the_average_divides_by_the_expected_batch() {
    let settings = DpSettings {
        noise_multiplier: 2.0,
        max_grad_norm: 1.5,
        expected_batch_size: 8.0,
        nodes: 4,
    };
    let mut sum = vec![1f32, -3.0];
    add_noise(&mut sum, &settings, &mut AddStd).unwrap();
    // sigma C / sqrt(N) = 2 * 1.5 / 2.
    assert_eq!(sum, vec![2.5, -1.5]);
    average(&mut sum, &settings);
    assert_eq!(sum, vec![2.5 / 8.0, -1.5 / 8.0]);
}
