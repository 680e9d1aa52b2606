//! `vmount init`: the config it writes is accepted by `vmount check`, and it never
//! replaces a file without --force.

mod common;

use common::{assert_fails, stderr, stdout, vmount};

#[test]
fn init_prints_a_config_that_checks() {
    for (fs, has) in [
        ("memfs", "type = \"memfs\""),
        ("loopback", "type = \"loopback\""),
    ] {
        let out = vmount(&["init", fs]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains(has) && text.contains("[winfsp]"), "{text}");
        // Point the paths at real directories; everything else is as written.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("mnt")).unwrap();
        std::fs::create_dir(dir.path().join("src")).unwrap();
        let text = text
            .replace("mountpoint = \"/tmp/vmount\"", "mountpoint = \"mnt\"")
            .replace("source = \"/srv/data\"", "source = \"src\"")
            .replace("backend = \"auto\"", "backend = \"nfs\"")
            .replace("mount = true", "mount = false");
        let config = dir.path().join("c.toml");
        std::fs::write(&config, text).unwrap();
        let out = vmount(&["check", config.to_str().unwrap()]);
        assert!(out.status.success(), "{fs}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("name:                   {fs}")));
    }
}

#[test]
fn init_writes_a_file_and_refuses_to_replace_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.toml");
    let p = path.to_str().unwrap();
    let out = vmount(&["init", "--output", p]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("wrote"), "{}", stderr(&out));
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.contains("type = \"memfs\""));

    let out = vmount(&["init", "loopback", "-o", p]);
    assert_fails(&out, 1, &["already exists", "--force"]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    let out = vmount(&["init", "loopback", "-o", p, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("type = \"loopback\"")
    );

    let out = vmount(&["init", "ramfs"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
