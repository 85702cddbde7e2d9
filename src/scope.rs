//! The task scope: which tokio task (or, outside tokio tasks, which thread) is running. The
//! hooks key their before-images by it, and strict mode its expectations, so that concurrent
//! writers never see each other's state.

/// The current tokio task, or the current thread outside tokio tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scope {
    Task(tokio::task::Id),
    Thread(std::thread::ThreadId),
}

impl Scope {
    pub(crate) fn current() -> Self {
        match tokio::task::try_id() {
            Some(id) => Scope::Task(id),
            None => Scope::Thread(std::thread::current().id()),
        }
    }
}
