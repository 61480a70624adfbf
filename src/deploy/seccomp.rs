//! The default seccomp profile of generated configs (images without `/exports`), and the
//! `--security-opt seccomp=…` choice.
//!
//! Equivalent in effect to containers-common's `seccomp.json` for a container without extra
//! capabilities: every syscall not listed fails with EPERM. Allowed: the ordinary syscalls of a
//! process (files, memory, signals, sockets, time reading, threads, execve…). Not allowed:
//! namespaces (`unshare`, `setns`, `clone` with a `CLONE_NEW*` flag; `clone3` fails with ENOSYS
//! so libc falls back to the filtered `clone`), mounts (`mount`, `umount2`, `pivot_root`,
//! `fsopen`…), the kernel keyring (`keyctl`, `add_key`, `request_key`), `ptrace`,
//! `process_vm_*`, `bpf`, `perf_event_open`, `kexec_*`, modules, `open_by_handle_at`, `reboot`,
//! `swapon`/`swapoff`, `acct`, clock setting, `userfaultfd`, `personality` other than the
//! harmless personas, `iopl`/`ioperm`, `lookup_dcookie`, `quotactl`, `syslog`, `vhangup`, `nfsservctl`…
//!
//! The profile is written once into the deployment's `config.json` (`linux.seccomp`), which the
//! runner's libcontainer (built with `libseccomp`) loads right before it execs the process
//! (after `noNewPrivileges`), and `hoist run` applies to what it execs in a running container.

use oci_spec::runtime::LinuxSeccomp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// EPERM and ENOSYS, the errnos the profile returns.
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// The syscalls every container may make.
const ALLOWED: &[&str] = &[
    // files and directories
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "lremovexattr",
    "lseek",
    "_llseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
    "getxattrat",
    "setxattrat",
    "listxattrat",
    "removexattrat",
    "cachestat",
    "futimesat",
    "chroot",
    // events, polling, pipes, aio
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "_newselect",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "fanotify_mark",
    // memory
    "brk",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
    "get_mempolicy",
    "set_mempolicy",
    "mbind",
    "set_mempolicy_home_node",
    "map_shadow_stack",
    "mseal",
    // processes, threads, signals
    "arch_prctl",
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_time64",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "kill",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "restart_syscall",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "sigaction",
    "sigaltstack",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "tgkill",
    "tkill",
    "ugetrlimit",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
    "alarm",
    "getcpu",
    "uname",
    "sysinfo",
    "times",
    "modify_ldt",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "riscv_flush_icache",
    "riscv_hwprobe",
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "sync_file_range2",
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "lsm_get_self_attr",
    "lsm_list_modules",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "seccomp",
    "process_mrelease",
    // time (reading)
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "gettimeofday",
    "nanosleep",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    // sockets and IPC
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socket",
    "socketcall",
    "socketpair",
    "ipc",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    // terminals
    "ioctl",
];

/// The personas `personality` may switch to (Linux, Linux32, UNAME26 variants, and the query).
const PERSONAS: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Architectures a profile covers: the native one and its 32-bit companions.
pub fn architectures(arch: &str) -> &'static [&'static str] {
    match arch {
        "x86_64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "aarch64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => &[],
    }
}

/// The default profile for `arch` (as `std::env::consts::ARCH` names it).
pub fn default_profile(arch: &str) -> LinuxSeccomp {
    let mut syscalls = vec![json!({"names": ALLOWED, "action": "SCMP_ACT_ALLOW"})];
    // clone without namespace flags. The same rule twice, with the mask in `value` and in
    // `valueTwo`: runc and crun read SCMP_CMP_MASKED_EQ as (mask=value, datum=valueTwo), youki's
    // libcontainer as (datum=value, mask=valueTwo). Each runtime's reading of the other entry
    // asks for (flags & 0) == mask, which never holds, so the pair allows exactly the same
    // calls under every runtime.
    for (value, value_two) in [(CLONE_NAMESPACE_FLAGS, 0), (0, CLONE_NAMESPACE_FLAGS)] {
        syscalls.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "valueTwo": value_two, "op": "SCMP_CMP_MASKED_EQ"}]
        }));
    }
    for p in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}]
        }));
    }
    // clone3 cannot be filtered on its flags (they are behind a pointer): ENOSYS makes libc use clone.
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    let v = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures(arch),
        "syscalls": syscalls,
    });
    serde_json::from_value(v).expect("the default seccomp profile is a valid LinuxSeccomp")
}

/// What `--security-opt seccomp=…` chose (recorded, so `hoist update` keeps it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Seccomp {
    /// hoist's default profile.
    #[default]
    Default,
    /// No filter (`seccomp=unconfined`).
    Unconfined,
    /// A profile from a file (`seccomp=/path/profile.json`), as read at install time.
    File { path: String, profile: Value },
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityOptError {
    #[error("unknown --security-opt {0:?} (known: seccomp=unconfined, seccomp=/path/profile.json)")]
    Unknown(String),
    #[error("--security-opt seccomp={path}: {reason}")]
    File { path: String, reason: String },
}

impl Seccomp {
    /// Parses the `--security-opt` values (the last seccomp= wins).
    pub fn from_security_opts(opts: &[String]) -> Result<Seccomp, SecurityOptError> {
        let mut choice = Seccomp::Default;
        for o in opts {
            let Some(v) = o.strip_prefix("seccomp=").or_else(|| o.strip_prefix("seccomp:")) else {
                return Err(SecurityOptError::Unknown(o.clone()));
            };
            choice = match v {
                "unconfined" => Seccomp::Unconfined,
                "" => return Err(SecurityOptError::Unknown(o.clone())),
                path => Seccomp::from_file(path)?,
            };
        }
        Ok(choice)
    }

    /// Reads and validates a profile file (OCI `linux.seccomp` form).
    pub fn from_file(path: &str) -> Result<Seccomp, SecurityOptError> {
        let err = |reason: String| SecurityOptError::File { path: path.to_string(), reason };
        let data = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let profile: Value = serde_json::from_slice(&data).map_err(|e| err(format!("not valid JSON: {e}")))?;
        validate(&profile).map_err(err)?;
        Ok(Seccomp::File { path: path.to_string(), profile })
    }

    /// The `linux.seccomp` value of a generated config, or None (unconfined).
    pub fn section(&self, arch: &str) -> Option<Value> {
        match self {
            Seccomp::Default => Some(serde_json::to_value(default_profile(arch)).expect("json")),
            Seccomp::Unconfined => None,
            Seccomp::File { profile, .. } => Some(profile.clone()),
        }
    }

    pub fn is_default(&self) -> bool {
        *self == Seccomp::Default
    }
}

/// A profile must be an OCI `linux.seccomp` object.
pub fn validate(profile: &Value) -> Result<(), String> {
    if !profile.is_object() {
        return Err("not a JSON object in OCI linux.seccomp form".into());
    }
    serde_json::from_value::<LinuxSeccomp>(profile.clone())
        .map(|_| ())
        .map_err(|e| format!("not an OCI linux.seccomp profile: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompOperator};

    #[test]
    fn default_profile_denies_by_default() {
        let p = default_profile("x86_64");
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(EPERM));
        assert_eq!(p.architectures().as_ref().unwrap().len(), 3);
        let sc = p.syscalls().as_ref().unwrap();
        let allowed = |name: &str| {
            sc.iter().any(|s| {
                s.action() == LinuxSeccompAction::ScmpActAllow
                    && s.args().is_none()
                    && s.names().iter().any(|n| n == name)
            })
        };
        for ok in ["read", "write", "execve", "accept4", "sendmsg", "openat", "wait4", "exit_group"] {
            assert!(allowed(ok), "{ok} allowed");
        }
        for denied in [
            "unshare",
            "setns",
            "clone",
            "clone3",
            "mount",
            "umount2",
            "pivot_root",
            "keyctl",
            "add_key",
            "request_key",
            "ptrace",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "open_by_handle_at",
            "reboot",
            "swapon",
            "swapoff",
            "acct",
            "settimeofday",
            "clock_settime",
            "personality",
            "userfaultfd",
            "process_vm_readv",
            "process_vm_writev",
            "fsopen",
            "move_mount",
            "open_tree",
            "iopl",
            "ioperm",
            "syslog",
            "quotactl",
            "lookup_dcookie",
            "vhangup",
        ] {
            assert!(!allowed(denied), "{denied} not allowed unconditionally");
        }
        let clone3 = sc.iter().find(|s| s.names().iter().any(|n| n == "clone3")).unwrap();
        assert_eq!((clone3.action(), clone3.errno_ret()), (LinuxSeccompAction::ScmpActErrno, Some(ENOSYS)));
        let clones: Vec<_> = sc.iter().filter(|s| s.names() == &["clone".to_string()]).collect();
        assert_eq!(clones.len(), 2);
        for c in clones {
            let a = &c.args().as_ref().unwrap()[0];
            assert_eq!((a.index(), a.op()), (0, LinuxSeccompOperator::ScmpCmpMaskedEq));
            assert_eq!(a.value() | a.value_two().unwrap_or(0), CLONE_NAMESPACE_FLAGS);
        }
        assert_eq!(default_profile("aarch64").architectures().as_ref().unwrap().len(), 2);
    }

    #[test]
    fn security_opts() {
        assert_eq!(Seccomp::from_security_opts(&[]).unwrap(), Seccomp::Default);
        assert_eq!(Seccomp::from_security_opts(&["seccomp=unconfined".into()]).unwrap(), Seccomp::Unconfined);
        assert!(Seccomp::Unconfined.section("x86_64").is_none());
        let e = Seccomp::from_security_opts(&["apparmor=x".into()]).unwrap_err();
        assert!(matches!(&e, SecurityOptError::Unknown(v) if v == "apparmor=x"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let path = f.display().to_string();
        let s = Seccomp::from_security_opts(&[format!("seccomp={path}")]).unwrap();
        assert_eq!(s.section("x86_64").unwrap()["syscalls"][0]["names"][0], "mkdir");
        std::fs::write(&f, "{not json").unwrap();
        let e = Seccomp::from_security_opts(&[format!("seccomp={path}")]).unwrap_err().to_string();
        assert!(e.contains(&path) && e.contains("not valid JSON"), "{e}");
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
        assert!(Seccomp::from_file(&path).unwrap_err().to_string().contains("linux.seccomp"));
    }
}
