//! Tier 3: the Ansible example (examples/ansible/playbook.yml) with ansible-core from PyPI,
//! `-c local` inside the testbed, twice: the first run declares the container and `hoist apply`
//! installs it (changed), the second changes nothing (ok, changed=0).

mod common;

use common::testbed::Testbed;
use common::*;

/// `TASK [title]`'s result line (`changed: [localhost]`, `ok: [localhost]`) in a run's output.
fn task_result(out: &str, title: &str) -> String {
    let mut lines = out.lines().skip_while(|l| !l.starts_with(&format!("TASK [{title}]")));
    lines.next();
    lines.find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string()
}

fn recap(out: &str) -> String {
    let line = out.lines().find(|l| l.starts_with("localhost")).unwrap_or_default();
    line.split_whitespace()
        .filter(|w| w.starts_with("changed=") || w.starts_with("failed="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn the_ansible_example_converges_then_reports_nothing_changed() {
    if !common::privileged("ansible::the_ansible_example_converges_then_reports_nothing_changed") {
        return;
    }
    // The interpreter that has ansible-core (from PyPI: `make test` installs it), by its real
    // path: the testbed's PATH need not lead to it.
    let py = std::process::Command::new("python3")
        .args(["-c", "import ansible, sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(py.status.success(), "ansible-core is needed (make test installs it from PyPI)");
    let py = String::from_utf8_lossy(&py.stdout).trim().to_string();
    let tb = Testbed::up("hybrid");
    let vars = serde_json::json!({
        "hoist_containers": [{"name": "hello", "image": format!("oci-archive:{}", hello().display()), "set": {"PORT": 8081}}]
    });
    std::fs::write(tb.dir.join("state/vars.json"), vars.to_string()).unwrap();
    let play = format!(
        "cd /var/lib/hoist && LC_ALL=C.UTF-8 ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP=/var/lib/hoist/.ansible \
         ANSIBLE_REMOTE_TEMP=/var/lib/hoist/.ansible {py} -m ansible.cli.playbook -c local -i localhost, \
         -e ansible_python_interpreter={py} -e @/var/lib/hoist/vars.json {}",
        repo().join("examples/ansible/playbook.yml").display()
    );
    let first = tb.ok(&play);
    assert_eq!(task_result(&first, "One file per container"), "changed: [localhost] => (item=hello)", "{first}");
    assert_eq!(task_result(&first, "Converge with hoist apply"), "changed: [localhost]", "{first}");
    assert_eq!(task_result(&first, "The containers directory"), "changed: [localhost]", "{first}");
    assert_eq!(recap(&first), "changed=3 failed=0", "{first}");
    assert_eq!(tb.hello_says("hello to answer"), "Hi world (v1)");
    assert_eq!(
        tb.ok("cat /etc/hoist/containers/hello.toml"),
        format!(
            "image = \"oci-archive:{}\"\nupdate = \"tag\"\nstarted = true\n[set]\nPORT = \"8081\"\n",
            hello().display()
        )
    );

    let second = tb.ok(&play);
    assert_eq!(task_result(&second, "One file per container"), "ok: [localhost] => (item=hello)", "{second}");
    assert_eq!(task_result(&second, "Converge with hoist apply"), "ok: [localhost]", "{second}");
    assert_eq!(recap(&second), "changed=0 failed=0", "{second}");
}
