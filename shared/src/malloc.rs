//! The sink's allocator arenas. glibc gives threads that allocate at once arenas of their own
//! (up to eight per core) and keeps what they free there for reuse, so a process whose threads
//! take turns with large buffers — the sink's: tokio's workers, librdkafka's threads, the batch
//! writers — holds more than it uses. With two arenas the sink's peak RSS on the bench's topic
//! went from 107–117 to 91–99 MiB at the same speed and CPU (jemalloc: 122–129 MiB).
//!
//! glibc reads `MALLOC_ARENA_MAX` only when a process starts, and setting it from inside would
//! take unsafe code (`mallopt`), which this project forbids: so the binary starts itself again,
//! once, with the variable set — unless the operator set it (their value wins).

use std::os::unix::process::CommandExt;

/// The variable and the value the sink runs with unless the operator set it.
pub const ARENA_MAX: (&str, &str) = ("MALLOC_ARENA_MAX", "2");

/// Replaces this process with the same binary and arguments, [`ARENA_MAX`] in its environment,
/// when the variable is not set. Returns when it is set, or when the binary cannot be executed
/// again (then the process goes on with glibc's default).
pub fn two_arenas() {
    let (name, value) = ARENA_MAX;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    // `exec` returns only on failure.
    let _failed = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(name, value)
        .exec();
}
