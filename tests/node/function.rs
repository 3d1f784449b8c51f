//! The function itself as a pod, the way users run it.

pub fn tests() -> Vec<crate::NodeTest> {
    vec![]
}
