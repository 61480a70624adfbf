//! hoist: install OCI container images as systemd system containers.
//!
//! The pipeline, one module per arrow:
//! ```text
//! imgref ─▶ fetch ─▶ store ─▶ layers ─▶ checkout ─▶ (bundle ─▶ unit ─▶ systemd ─▶ runner)
//! ```
//! - [`imgref`]: what the user typed (`docker://…`, `oci:DIR`, `oci-archive:FILE`, stored names).
//! - [`fetch`]: brings a source's blobs into the [`store`] and extracts its layers, from where
//!   [`registries`] says (registries.conf mirrors and short names, certs.d, credential helpers).
//! - [`store`]: the OCI image layout with stored names (`store/index.json`).
//! - [`layers`]: each layer extracted once into the shared layer area, safely.
//! - [`checkout`]: merges extracted layers into a rootfs (whiteouts, opaque dirs) by hard links.
//! - [`images`]: list / remove / inspect / prune.
//! - [`mount`]: read-only views of an image's rootfs.
//!
//! - [`rooted`]: root-scoped I/O for every tree hoist does not control (no symlink is followed).
//!
//! All paths come from one [`layout::Layout`] built from `--root`.

pub mod apply;
pub mod checkout;
pub mod cli;
pub mod deploy;
pub mod digest;
pub mod error;
pub mod fault;
pub mod fetch;
pub mod fleet;
pub mod fsutil;
pub mod health;
pub mod host;
pub mod images;
pub mod imgref;
pub mod layers;
pub mod layout;
pub mod lock;
pub mod mount;
pub mod oci_build;
pub mod ops;
pub mod progress;
pub mod registries;
pub mod rooted;
pub mod rootfs;
pub mod runner;
pub mod store;
pub mod systemd;
pub mod template;
#[cfg(test)]
mod test_tier;
pub mod trust;
