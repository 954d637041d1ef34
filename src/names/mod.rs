//! The vocabulary the steps and the report share: the names of the unlearning methods
//! ([`MethodName`]: the method registry's list, with table order, labels and the reference flag)
//! and of the metrics ([`MetricId`]). A leaf module, so that the report orders, labels and reads
//! its rows from the store without importing the steps that wrote them.

mod method;
mod metric;

pub use method::{MethodName, Sweep};
pub use metric::MetricId;
