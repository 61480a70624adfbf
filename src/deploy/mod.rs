//! Deployments: turning a stored image into a bundle, a unit and host files.
//!
//! Pure renderers ([`values`], [`bundle`], [`unit`], [`unitfile`]), the deployment record, the
//! container name rule ([`name`]) and the owner of a container's deployments on disk
//! ([`container`], migrated from the v1 layout by [`migrate`]).

pub mod bundle;
pub mod compat;
pub mod container;
pub mod hostfs;
pub mod migrate;
pub mod name;
pub mod record;
pub mod seccomp;
pub mod unit;
pub mod unitfile;
pub mod values;
