//! Deployments: turning a stored image into a bundle, a unit and host files.
//!
//! Pure renderers ([`values`], [`bundle`], [`unit`], [`unitfile`]) and the deployment record.

pub mod bundle;
pub mod hostfs;
pub mod record;
pub mod seccomp;
pub mod unit;
pub mod unitfile;
pub mod values;
