//! One module per subcommand.

pub mod access;
pub mod catalog;
pub mod check;
pub mod collect;
pub mod demo;
pub mod init;
pub mod publish;
pub mod receipt;
pub mod report;
pub mod serve;
pub mod sql;
pub mod synth;
