//! Choosing the device at run time: `flex` (pure-Rust CPU, always built) or `wgpu` (GPU through
//! burn's WGSL path, only with this crate's `wgpu` cargo feature — never `vulkan`, whose SPIR-V
//! path crashes Mesa's lavapipe).
//!
//! The device is always chosen explicitly: `Device::default()` prefers a GPU adapter, so a
//! `wgpu` build on a CPU-only machine would silently land on a software rasteriser. A `wgpu`
//! device is probed with a tiny forward and a checked read-back before use; when no adapter
//! exists or the probe fails (an error or a panic inside the driver stack), the model falls back
//! to `flex` with one warning.
//!
//! `wgpu` asked of a build without the feature falls back to `flex` the same way, with a warning
//! that says how to get a GPU build. The choice is a speed preference, never a correctness one
//! (both devices run the same model), so a forecaster whose image lacks the GPU build keeps
//! forecasting on the CPU instead of stopping at every start under a restart policy.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::Device;

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// burn's `flex` CPU backend.
    #[default]
    Flex,
    /// The default `wgpu` adapter (needs the `wgpu` feature).
    Wgpu,
}

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(Self::Flex),
            "wgpu" | "gpu" => Ok(Self::Wgpu),
            other => bail!("unknown device `{other}`; known: flex, wgpu"),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
        })
    }
}

/// Whether this build can run on `wgpu`.
pub const WGPU_BUILT: bool = cfg!(feature = "wgpu");

/// The device for `choice`: `flex` as is; `wgpu` probed, falling back to `flex` with a warning
/// when it does not work or this build lacks the `wgpu` feature. The second value is the device
/// in use.
pub fn select(choice: DeviceChoice) -> Result<(Device, DeviceChoice)> {
    match choice {
        DeviceChoice::Flex => Ok((Device::flex(), DeviceChoice::Flex)),
        DeviceChoice::Wgpu => wgpu(),
    }
}

/// Why `wgpu` cannot run in a build without the feature, and how to get one that can.
pub const NO_WGPU_BUILD: &str = "the LSTM device `wgpu` (--lstm-device, TICKCAST_LSTM_DEVICE) \
     needs a build with the `wgpu` feature, and this binary has `flex` only: use the `tickcast:gpu` \
     image (docker build --target runtime-gpu --build-arg FEATURES=wgpu) or \
     cargo build --release --features wgpu";

#[cfg(not(feature = "wgpu"))]
#[allow(clippy::unnecessary_wraps)] // the `wgpu` build's twin can fail
fn wgpu() -> Result<(Device, DeviceChoice)> {
    tracing::warn!("{NO_WGPU_BUILD}; running the LSTM on the CPU (flex)");
    Ok((Device::flex(), DeviceChoice::Flex))
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<(Device, DeviceChoice)> {
    match probe_wgpu() {
        Ok(device) => Ok((device, DeviceChoice::Wgpu)),
        Err(e) => {
            tracing::warn!("wgpu device unusable ({e:#}); falling back to flex");
            Ok((Device::flex(), DeviceChoice::Flex))
        }
    }
}

/// Opens the default `wgpu` adapter and checks a tiny matmul + sigmoid read back from it.
#[cfg(feature = "wgpu")]
pub fn probe_wgpu() -> Result<Device> {
    use burn::tensor::{DeviceKind, Tensor, TensorData, activation::sigmoid};
    let attempt = std::panic::catch_unwind(|| -> Result<Device> {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let a = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        let b = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 0.0, 0.25], [2, 2]),
            &device,
        );
        let got = crate::models::lstm::net::read(sigmoid(a.matmul(b)))?;
        // [[0.5, -0.5], [1.5, -2.0]] through the logistic function.
        let want = [0.5f64, -0.5, 1.5, -2.0].map(|z| 1.0 / (1.0 + (-z).exp()));
        let ok = got.len() == 4
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| (f64::from(*g) - w).abs() < 1e-4);
        if !ok {
            bail!("probe read back {got:?}, expected {want:?}");
        }
        Ok(device)
    });
    match attempt {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            bail!("wgpu initialisation panicked: {msg}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_unknown_devices() {
        assert_eq!(
            "flex".parse::<DeviceChoice>().expect("flex"),
            DeviceChoice::Flex
        );
        assert_eq!(
            " WGPU ".parse::<DeviceChoice>().expect("wgpu"),
            DeviceChoice::Wgpu
        );
        assert!("vulkan".parse::<DeviceChoice>().is_err());
        assert_eq!(
            select(DeviceChoice::Flex).expect("flex").1,
            DeviceChoice::Flex
        );
    }

    #[cfg(not(feature = "wgpu"))]
    #[test]
    fn wgpu_without_the_feature_falls_back_to_flex() {
        let (_, used) = select(DeviceChoice::Wgpu).expect("falls back");
        assert_eq!(used, DeviceChoice::Flex);
        assert!(
            NO_WGPU_BUILD.contains("TICKCAST_LSTM_DEVICE")
                && NO_WGPU_BUILD.contains("tickcast:gpu")
        );
    }
}
