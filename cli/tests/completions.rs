//! Shell completions and the man page are generated from the CLI definition, so they
//! name every subcommand.

mod common;

use common::{stderr, stdout, vmount};

const SUBCOMMANDS: [&str; 9] = [
    "mount",
    "check",
    "backends",
    "unmount",
    "init",
    "completions",
    "man",
    "service",
    "help",
];

/// The subcommands `vmount --help` lists, so that a new one is checked too.
fn listed_subcommands() -> Vec<String> {
    let help = stdout(&vmount(&["--help"]));
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|s| s.split("\n\n").next())
        .unwrap_or_else(|| panic!("no command list in {help}"))
        .to_owned();
    section
        .lines()
        // Wrapped descriptions are indented further than the names.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn help_lists_the_known_subcommands() {
    let listed = listed_subcommands();
    for sub in SUBCOMMANDS {
        assert!(listed.iter().any(|l| l == sub), "{sub} not in {listed:?}");
    }
}

#[test]
fn completions_name_every_subcommand() {
    let subs = listed_subcommands();
    let out = vmount(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bash = stdout(&out);
    assert!(bash.contains("complete -F _vmount"), "{bash}");
    for sub in &subs {
        // A case arm per subcommand, and the name among the words completed.
        assert!(
            bash.contains(&format!("vmount,{sub})")),
            "bash completion lacks {sub}"
        );
    }
    assert!(bash.contains("vmount__subcmd__service,install)"), "{bash}");
    assert!(
        bash.contains("vmount__subcmd__service,uninstall)"),
        "{bash}"
    );
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = vmount(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in &subs {
            assert!(
                text.contains(sub.as_str()),
                "{shell} completion lacks {sub}"
            );
        }
    }
    let out = vmount(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_page_mentions_every_subcommand() {
    let out = vmount(&["man"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let man = stdout(&out);
    assert!(
        man.starts_with(".ie") || man.contains(".TH vmount 1"),
        "{man}"
    );
    for sub in listed_subcommands().iter().filter(|s| *s != "help") {
        assert!(
            man.contains(&format!("vmount\\-{sub}(1)")),
            "man page lacks {sub}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = vmount(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in [
        "vmount.1",
        "vmount-check.1",
        "vmount-service.1",
        "vmount-service-install.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
}
