//! Scoring rules of the public benchmarks the evaluations report against, kept as a library
//! so that they are unit-tested apart from the `proact-model-eval` command that runs them.

pub mod nab;
