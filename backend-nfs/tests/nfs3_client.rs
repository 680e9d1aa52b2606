//! The server through an independent NFSv3 client, the `nfs3_client` crate: its own XDR
//! (`nfs3_types`), record marking and PORTMAP -> MOUNT -> NFS connection sequence, so an
//! encoding mistake shared by the server and the home-made client in `server_common`
//! would show here. Every NFSv3 procedure runs against memfs and (on unix) loopback over
//! a temporary directory.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nfs3_client::nfs3_types::mount::{dirpath, mountstat3};
use nfs3_client::nfs3_types::nfs3::{
    ACCESS3_DELETE, ACCESS3_EXECUTE, ACCESS3_EXTEND, ACCESS3_LOOKUP, ACCESS3_MODIFY, ACCESS3_READ,
    ACCESS3args, COMMIT3args, COMMIT3resok, CREATE3args, FSF3_CANSETTIME, FSF3_HOMOGENEOUS,
    FSF3_LINK, FSF3_SYMLINK, FSINFO3args, FSSTAT3args, FSSTAT3resok, GETATTR3args, LINK3args,
    LOOKUP3args, MKDIR3args, MKNOD3args, Nfs3Option, Nfs3Result, PATHCONF3args, READ3args,
    READ3resok, READDIR3args, READDIRPLUS3args, READLINK3args, REMOVE3args, RENAME3args,
    RMDIR3args, SETATTR3args, SYMLINK3args, WRITE3args, WRITE3resok, cookieverf3, createhow3,
    createverf3, devicedata3, diropargs3, fattr3, filename3, ftype3, mknoddata3, nfs_fh3, nfspath3,
    nfsstat3, nfstime3, sattr3, set_atime, set_mtime, specdata3, stable_how, symlinkdata3,
};
use nfs3_client::nfs3_types::rpc::{auth_stat, auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::{Opaque, Pack};
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{
    ConnectError, MountError, Nfs3Connection, Nfs3ConnectionBuilder, PortmapError,
    PortmapperClient, RpcError,
};
use tokio::net::TcpStream;
use vmount_backend_nfs::{NfsServer, ServeOptions, serve};
use vmount_core::Vfs;
use vmount_core::memfs::{MemFs, MemFsOptions};

type Conn = Nfs3Connection<TokioIo<TcpStream>>;

/// The unprivileged user the servers allow besides root.
const USER: u32 = 1000;
/// The handle length the server issues.
const FH_LEN: usize = 16;

// ---- servers and connections ----

/// A filesystem to serve, and what keeps its backing store alive.
struct Backend {
    fs: Arc<dyn Vfs>,
    memfs: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn memfs() -> Backend {
        Backend {
            fs: Arc::new(MemFs::new(MemFsOptions {
                root_mode: 0o755,
                ..MemFsOptions::default()
            })),
            memfs: true,
            _dir: None,
        }
    }

    #[cfg(unix)]
    fn loopback() -> Backend {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let fs = vmount_core::loopback::Loopback::new(vmount_core::loopback::LoopbackOptions {
            source: dir.path().to_owned(),
            read_only: false,
        })
        .unwrap();
        Backend {
            fs: Arc::new(fs),
            memfs: false,
            _dir: Some(dir),
        }
    }

    fn serve(&self) -> NfsServer {
        serve(
            Arc::clone(&self.fs),
            &ServeOptions {
                allowed_uids: vec![USER],
                ..ServeOptions::default()
            },
        )
        .unwrap()
    }
}

fn cred(uid: u32, gid: u32) -> opaque_auth<'static> {
    opaque_auth::auth_unix(&auth_unix {
        stamp: 7,
        machinename: Opaque::borrowed(b"nfs3-client-test"),
        uid,
        gid,
        gids: vec![gid],
    })
}

/// The crate's whole connection path: GETPORT for MOUNT and NFS from our portmapper
/// (which answers on the server's own port), MNT, then a separate NFS connection.
fn builder(srv: &NfsServer, uid: u32) -> Nfs3ConnectionBuilder<TokioConnector> {
    Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", srv.export_path())
        .connect_from_privileged_port(false)
        .portmapper_port(srv.port())
        .credential(cred(uid, uid))
}

async fn connect_as(srv: &NfsServer, uid: u32) -> Conn {
    builder(srv, uid).mount().await.unwrap()
}

async fn connect(srv: &NfsServer) -> Conn {
    connect_as(srv, 0).await
}

// ---- argument and result helpers ----

/// The status of a reply; the RPC itself must have succeeded.
fn st<T, E>(r: Result<Nfs3Result<T, E>, RpcError>) -> Result<T, nfsstat3> {
    match r.expect("RPC call failed") {
        Nfs3Result::Ok(v) => Ok(v),
        Nfs3Result::Err((s, _)) => Err(s),
    }
}

fn name(n: &str) -> filename3<'static> {
    filename3(Opaque::owned(n.as_bytes().to_vec()))
}

fn at(dir: &nfs_fh3, n: &str) -> diropargs3<'static> {
    diropargs3 {
        dir: dir.clone(),
        name: name(n),
    }
}

fn mode(m: u32) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(m),
        ..sattr3::default()
    }
}

fn attrs(a: Nfs3Option<fattr3>) -> fattr3 {
    match a {
        Nfs3Option::Some(a) => a,
        Nfs3Option::None => panic!("the reply carries no attributes"),
    }
}

fn fileid(a: &Nfs3Option<fattr3>) -> u64 {
    match a {
        Nfs3Option::Some(a) => a.fileid,
        Nfs3Option::None => panic!("the reply carries no attributes"),
    }
}

/// The error of a connection attempt that must fail.
fn mount_err(r: Result<Conn, ConnectError>) -> ConnectError {
    match r {
        Ok(_) => panic!("the mount succeeded"),
        Err(e) => e,
    }
}

fn handle(h: Nfs3Option<nfs_fh3>) -> nfs_fh3 {
    match h {
        Nfs3Option::Some(h) => {
            assert_eq!(h.data.len(), FH_LEN);
            h
        }
        Nfs3Option::None => panic!("the reply carries no handle"),
    }
}

fn now_secs() -> u32 {
    let s = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u32::try_from(s.as_secs()).unwrap()
}

async fn getattr(c: &mut Conn, fh: &nfs_fh3) -> Result<fattr3, nfsstat3> {
    let r = c.getattr(&GETATTR3args { object: fh.clone() }).await;
    st(r).map(|ok| ok.obj_attributes)
}

async fn lookup(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    let r = c.lookup(&LOOKUP3args { what: at(dir, n) }).await;
    st(r).map(|ok| {
        assert!(ok.dir_attributes.is_some());
        (ok.object, attrs(ok.obj_attributes))
    })
}

async fn create_how(
    c: &mut Conn,
    dir: &nfs_fh3,
    n: &str,
    how: createhow3,
) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    let r = c
        .create(&CREATE3args {
            where_: at(dir, n),
            how,
        })
        .await;
    st(r).map(|ok| {
        assert!(ok.dir_wcc.after.is_some());
        (handle(ok.obj), attrs(ok.obj_attributes))
    })
}

/// A GUARDED create.
async fn create(
    c: &mut Conn,
    dir: &nfs_fh3,
    n: &str,
    m: u32,
) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    create_how(c, dir, n, createhow3::GUARDED(mode(m))).await
}

async fn mkdir(
    c: &mut Conn,
    dir: &nfs_fh3,
    n: &str,
    m: u32,
) -> Result<(nfs_fh3, fattr3), nfsstat3> {
    let r = c
        .mkdir(&MKDIR3args {
            where_: at(dir, n),
            attributes: mode(m),
        })
        .await;
    st(r).map(|ok| (handle(ok.obj), attrs(ok.obj_attributes)))
}

async fn write(
    c: &mut Conn,
    fh: &nfs_fh3,
    offset: u64,
    data: &[u8],
    stable: stable_how,
) -> Result<WRITE3resok, nfsstat3> {
    let r = c
        .write(&WRITE3args {
            file: fh.clone(),
            offset,
            count: u32::try_from(data.len()).unwrap(),
            stable,
            data: Opaque::borrowed(data),
        })
        .await;
    st(r)
}

/// COMMIT of the whole file.
async fn commit(c: &mut Conn, fh: &nfs_fh3) -> Result<COMMIT3resok, nfsstat3> {
    let r = c
        .commit(&COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        })
        .await;
    st(r)
}

async fn read(
    c: &mut Conn,
    fh: &nfs_fh3,
    offset: u64,
    count: u32,
) -> Result<READ3resok<'static>, nfsstat3> {
    let r = c
        .read(&READ3args {
            file: fh.clone(),
            offset,
            count,
        })
        .await;
    st(r).inspect(|ok| assert_eq!(ok.count as usize, ok.data.len()))
}

async fn setattr(
    c: &mut Conn,
    fh: &nfs_fh3,
    set: sattr3,
    guard: Option<nfstime3>,
) -> Result<fattr3, nfsstat3> {
    let r = c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: set,
            guard: guard.map_or(Nfs3Option::None, Nfs3Option::Some),
        })
        .await;
    st(r).map(|ok| attrs(ok.obj_wcc.after))
}

async fn access(c: &mut Conn, fh: &nfs_fh3, asked: u32) -> Result<u32, nfsstat3> {
    let r = c
        .access(&ACCESS3args {
            object: fh.clone(),
            access: asked,
        })
        .await;
    st(r).map(|ok| {
        assert!(ok.obj_attributes.is_some());
        ok.access
    })
}

async fn remove(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(), nfsstat3> {
    st(c.remove(&REMOVE3args { object: at(dir, n) }).await).map(drop)
}

async fn rmdir(c: &mut Conn, dir: &nfs_fh3, n: &str) -> Result<(), nfsstat3> {
    st(c.rmdir(&RMDIR3args { object: at(dir, n) }).await).map(drop)
}

async fn rename(
    c: &mut Conn,
    from: &nfs_fh3,
    from_name: &str,
    to: &nfs_fh3,
    to_name: &str,
) -> Result<(), nfsstat3> {
    let r = c
        .rename(&RENAME3args {
            from: at(from, from_name),
            to: at(to, to_name),
        })
        .await;
    st(r).map(|ok| {
        assert!(ok.fromdir_wcc.after.is_some() && ok.todir_wcc.after.is_some());
    })
}

const ALL_ACCESS: u32 = ACCESS3_READ
    | ACCESS3_LOOKUP
    | ACCESS3_MODIFY
    | ACCESS3_EXTEND
    | ACCESS3_DELETE
    | ACCESS3_EXECUTE;

macro_rules! on_both {
    ($scenario:ident, $mem:ident, $lb:ident) => {
        #[tokio::test]
        async fn $mem() {
            $scenario(Backend::memfs()).await;
        }

        #[cfg(unix)]
        #[tokio::test]
        async fn $lb() {
            $scenario(Backend::loopback()).await;
        }
    };
}

// ---- MOUNT, PORTMAP, NULL and credentials ----

#[tokio::test]
async fn portmapper_mount_null_and_umnt() {
    let b = Backend::memfs();
    let srv = b.serve();
    let mut c = connect(&srv).await;
    // GETPORT gave the server's port for both programs.
    assert_eq!((c.mount_port, c.nfs3_port), (srv.port(), srv.port()));
    assert_eq!(c.mount_resok.fhandle.0.len(), FH_LEN);
    assert_eq!(c.mount_resok.auth_flavors, vec![1]); // AUTH_UNIX only
    c.null().await.unwrap();
    c.mount_client.null().await.unwrap();
    let root = c.root_nfs_fh3();
    let a = getattr(&mut c, &root).await.unwrap();
    assert_eq!(a.type_, ftype3::NF3DIR);
    assert_eq!((a.fileid, a.mode, a.uid), (1, 0o755, 0));
    // EXPORT names the one export; DUMP lists the mount until UMNT.
    let exports = c.mount_client.export().await.unwrap();
    let dirs: Vec<Vec<u8>> = exports.0.iter().map(|e| e.ex_dir.0.to_vec()).collect();
    assert_eq!(dirs, vec![b"/vmount".to_vec()]);
    let dump = c.mount_client.dump().await.unwrap();
    let mounted: Vec<Vec<u8>> = dump.0.iter().map(|m| m.ml_directory.0.to_vec()).collect();
    assert_eq!(mounted, vec![b"/vmount".to_vec()]);
    c.mount_client
        .umnt(dirpath(Opaque::borrowed(b"/vmount")))
        .await
        .unwrap();
    assert!(c.mount_client.dump().await.unwrap().0.is_empty());
    // The root handle outlives UMNT (NFS is stateless), as with knfsd.
    assert_eq!(getattr(&mut c, &root).await.unwrap().fileid, 1);
    // MNT of a second, unknown export is refused with NOENT.
    let err = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", "/elsewhere")
        .connect_from_privileged_port(false)
        .portmapper_port(srv.port())
        .credential(cred(0, 0))
        .mount()
        .await;
    let err = mount_err(err);
    assert!(
        matches!(
            err,
            ConnectError::Mount(MountError::Denied(mountstat3::MNT3ERR_NOENT))
        ),
        "{err:?}"
    );
    c.unmount().await.unwrap();
}

#[tokio::test]
async fn portmapper_answers_for_nfs_and_mount() {
    let b = Backend::memfs();
    let srv = b.serve();
    let stream = TcpStream::connect(("127.0.0.1", srv.port())).await.unwrap();
    let mut pm = PortmapperClient::new(TokioIo::new(stream));
    pm.null().await.unwrap();
    let tcp = nfs3_client::nfs3_types::portmap::IPPROTO_TCP;
    let udp = nfs3_client::nfs3_types::portmap::IPPROTO_UDP;
    let (nfs, mnt) = (
        nfs3_client::nfs3_types::nfs3::PROGRAM,
        nfs3_client::nfs3_types::mount::PROGRAM,
    );
    assert_eq!(pm.getport(nfs, 3, tcp).await.unwrap(), srv.port());
    assert_eq!(pm.getport(mnt, 3, tcp).await.unwrap(), srv.port());
    // Not served: UDP, NFSv4, the lock manager.
    for (prog, vers, prot) in [(nfs, 3, udp), (nfs, 4, tcp), (100_021, 4, tcp)] {
        let e = pm.getport(prog, vers, prot).await.unwrap_err();
        assert!(matches!(e, PortmapError::ProgramUnavailable), "{e:?}");
    }
    let mut maps: Vec<(u32, u32, u32, u32)> = pm
        .dump()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.prog, m.vers, m.prot, m.port))
        .collect();
    maps.sort_unstable();
    let port = u32::from(srv.port());
    assert_eq!(maps, vec![(nfs, 3, tcp, port), (mnt, 3, tcp, port)]);
}

#[tokio::test]
async fn explicit_ports_and_privileged_source_port() {
    let b = Backend::memfs();
    let srv = b.serve();
    let p = srv.port();
    // No portmapper: the builder goes straight to MOUNT and NFS on the given ports. The
    // portmapper port points at nothing, so a GETPORT would fail the mount.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    // Connecting from a port below 1024 needs root; it is how kernel clients connect.
    #[cfg(unix)]
    // SAFETY: geteuid has no preconditions and cannot fail.
    let privileged = unsafe { libc::geteuid() } == 0;
    #[cfg(not(unix))]
    let privileged = false;
    let mut c = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", "/vmount")
        .connect_from_privileged_port(privileged)
        .portmapper_port(dead_port)
        .mount_port(p)
        .nfs3_port(p)
        .credential(cred(0, 0))
        .mount()
        .await
        .unwrap();
    assert_eq!((c.mount_port, c.nfs3_port), (p, p));
    c.null().await.unwrap();
    let root = c.root_nfs_fh3();
    let (fh, a) = create(&mut c, &root, "x", 0o600).await.unwrap();
    assert_eq!((a.type_, a.mode, a.size), (ftype3::NF3REG, 0o600, 0));
    assert_eq!(getattr(&mut c, &fh).await.unwrap().fileid, a.fileid);
    c.unmount().await.unwrap();
}

/// An NFS client on its own connection, with no MOUNT (it uses a handle it was given).
async fn raw_client(port: u16, uid: u32) -> nfs3_client::Nfs3Client<TokioIo<TcpStream>> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    nfs3_client::Nfs3Client::new_with_auth(
        TokioIo::new(stream),
        cred(uid, uid),
        opaque_auth::default(),
    )
}

#[tokio::test]
async fn users_outside_the_allowed_list_are_refused() {
    let b = Backend::memfs();
    let srv = b.serve();
    // MNT itself needs an allowed uid; the refusal is an RPC AUTH_TOOWEAK.
    let err = mount_err(builder(&srv, 4242).mount().await);
    assert!(
        matches!(
            err,
            ConnectError::Mount(MountError::Rpc(RpcError::Auth(auth_stat::AUTH_TOOWEAK)))
        ),
        "{err:?}"
    );
    // An allowed unprivileged user mounts and acts.
    let mut user = connect_as(&srv, USER).await;
    let root = user.root_nfs_fh3();
    assert_eq!(getattr(&mut user, &root).await.unwrap().fileid, 1);
    // With a handle it was given, an unknown uid still gets only NULL answered.
    let mut stranger = raw_client(srv.port(), 4242).await;
    stranger.null().await.unwrap();
    let err = stranger
        .getattr(&GETATTR3args {
            object: root.clone(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Auth(auth_stat::AUTH_TOOWEAK)),
        "{err:?}"
    );
}

// ---- attributes and names ----

async fn attributes_and_lookup(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (fh, a) = create(&mut c, &root, "f", 0o644).await.unwrap();
    assert_eq!(
        (a.type_, a.mode, a.nlink, a.size),
        (ftype3::NF3REG, 0o644, 1, 0)
    );
    let w = write(&mut c, &fh, 0, &[7u8; 100], stable_how::FILE_SYNC)
        .await
        .unwrap();
    assert_eq!(w.count, 100);

    // GETATTR agrees with what CREATE and WRITE reported.
    let g = getattr(&mut c, &fh).await.unwrap();
    assert_eq!(
        (g.fileid, g.size, g.mode, g.uid, g.gid),
        (a.fileid, 100, 0o644, 0, 0)
    );
    assert_eq!(g.fsid, getattr(&mut c, &root).await.unwrap().fsid);

    // SETATTR: mode.
    let after = setattr(&mut c, &fh, mode(0o600), None).await.unwrap();
    assert_eq!(after.mode, 0o600);
    assert_eq!(getattr(&mut c, &fh).await.unwrap().mode, 0o600);

    // SETATTR: size truncates; the wcc data shows before and after.
    let r = c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: sattr3 {
                size: Nfs3Option::Some(10),
                ..sattr3::default()
            },
            guard: Nfs3Option::None,
        })
        .await;
    let ok = st(r).unwrap();
    match ok.obj_wcc.before {
        Nfs3Option::Some(before) => assert_eq!(before.size, 100),
        Nfs3Option::None => panic!("SETATTR gave no pre-op attributes"),
    }
    assert_eq!(attrs(ok.obj_wcc.after).size, 10);
    let rd = read(&mut c, &fh, 0, 4096).await.unwrap();
    assert_eq!((rd.data.to_vec(), rd.eof), (vec![7u8; 10], true));

    // SETATTR: times from the client, then the server's clock.
    let mtime = nfstime3 {
        seconds: 1_000_000_000,
        nseconds: 123_456_789,
    };
    let atime = nfstime3 {
        seconds: 1_100_000_000,
        nseconds: 5,
    };
    let set = sattr3 {
        atime: set_atime::SET_TO_CLIENT_TIME(atime),
        mtime: set_mtime::SET_TO_CLIENT_TIME(mtime),
        ..sattr3::default()
    };
    let t = setattr(&mut c, &fh, set, None).await.unwrap();
    assert_eq!((t.mtime, t.atime), (mtime, atime));
    let before = now_secs();
    let set = sattr3 {
        mtime: set_mtime::SET_TO_SERVER_TIME,
        ..sattr3::default()
    };
    let t = setattr(&mut c, &fh, set, None).await.unwrap();
    assert!(t.mtime.seconds >= before && t.mtime.seconds <= now_secs() + 1);
    assert_eq!(t.atime, atime);

    // The guard: a wrong ctime is NOT_SYNC and changes nothing; the right one applies.
    let cur = getattr(&mut c, &fh).await.unwrap();
    let wrong = nfstime3 {
        seconds: cur.ctime.seconds.wrapping_sub(1),
        nseconds: cur.ctime.nseconds,
    };
    let r = c
        .setattr(&SETATTR3args {
            object: fh.clone(),
            new_attributes: mode(0o640),
            guard: Nfs3Option::Some(wrong),
        })
        .await
        .unwrap();
    match r {
        Nfs3Result::Err((s, fail)) => {
            assert_eq!(s, nfsstat3::NFS3ERR_NOT_SYNC);
            assert_eq!(attrs(fail.obj_wcc.after).mode, 0o600);
        }
        Nfs3Result::Ok(_) => panic!("a wrong guard was accepted"),
    }
    let unchanged = getattr(&mut c, &fh).await.unwrap();
    assert_eq!((unchanged.mode, unchanged.ctime), (0o600, cur.ctime));
    let guarded = setattr(&mut c, &fh, mode(0o640), Some(cur.ctime))
        .await
        .unwrap();
    assert_eq!(guarded.mode, 0o640);

    // LOOKUP: found (same handle), missing, `.` and `..`.
    let (lfh, la) = lookup(&mut c, &root, "f").await.unwrap();
    assert_eq!(
        (lfh.clone(), la.fileid, la.size),
        (fh.clone(), a.fileid, 10)
    );
    let r = c
        .lookup(&LOOKUP3args {
            what: at(&root, "nope"),
        })
        .await
        .unwrap();
    match r {
        Nfs3Result::Err((s, fail)) => {
            assert_eq!(s, nfsstat3::NFS3ERR_NOENT);
            assert_eq!(attrs(fail.dir_attributes).fileid, 1);
        }
        Nfs3Result::Ok(_) => panic!("found a name never created"),
    }
    let (dfh, da) = mkdir(&mut c, &root, "d", 0o755).await.unwrap();
    let (sfh, sa) = mkdir(&mut c, &dfh, "sub", 0o700).await.unwrap();
    let (dot, dot_a) = lookup(&mut c, &sfh, ".").await.unwrap();
    assert_eq!((dot, dot_a.fileid), (sfh.clone(), sa.fileid));
    let (up, up_a) = lookup(&mut c, &sfh, "..").await.unwrap();
    assert_eq!((up, up_a.fileid), (dfh.clone(), da.fileid));
    let (up2, up2_a) = lookup(&mut c, &dfh, "..").await.unwrap();
    assert_eq!((up2, up2_a.fileid), (root.clone(), 1));
    let (rootup, _) = lookup(&mut c, &root, "..").await.unwrap();
    assert_eq!(rootup, root);
    // LOOKUP in a file is NOTDIR.
    assert_eq!(
        lookup(&mut c, &fh, "x").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOTDIR
    );

    // SYMLINK and READLINK.
    let r = c
        .symlink(&SYMLINK3args {
            where_: at(&dfh, "ln"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3(Opaque::borrowed(b"../f")),
            },
        })
        .await;
    let ok = st(r).unwrap();
    let lfh = handle(ok.obj);
    let la = attrs(ok.obj_attributes);
    assert_eq!((la.type_, la.size), (ftype3::NF3LNK, 4));
    let r = c
        .readlink(&READLINK3args {
            symlink: lfh.clone(),
        })
        .await;
    let ok = st(r).unwrap();
    assert_eq!(ok.data.0.to_vec(), b"../f".to_vec());
    assert_eq!(attrs(ok.symlink_attributes).fileid, la.fileid);
    let (_, la2) = lookup(&mut c, &dfh, "ln").await.unwrap();
    assert_eq!(la2.type_, ftype3::NF3LNK);
    // READLINK of a regular file is INVAL.
    let r = c
        .readlink(&READLINK3args {
            symlink: fh.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_INVAL);
}

on_both!(
    attributes_and_lookup,
    attributes_and_lookup_memfs,
    attributes_and_lookup_loopback
);

// ---- READ, WRITE, COMMIT ----

async fn read_write_commit(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (fh, _) = create(&mut c, &root, "io", 0o644).await.unwrap();
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 253) as u8).collect();

    // UNSTABLE writes are acknowledged as UNSTABLE with one verifier, which COMMIT
    // repeats.
    let w1 = write(&mut c, &fh, 0, &data[..600], stable_how::UNSTABLE)
        .await
        .unwrap();
    assert_eq!((w1.count, w1.committed), (600, stable_how::UNSTABLE));
    assert_eq!(attrs(w1.file_wcc.after).size, 600);
    let w2 = write(&mut c, &fh, 600, &data[600..], stable_how::UNSTABLE)
        .await
        .unwrap();
    assert_eq!((w2.count, w2.committed), (400, stable_how::UNSTABLE));
    assert_eq!(w1.verf, w2.verf);
    assert_ne!(w1.verf.0, [0; 8]);
    let ok = commit(&mut c, &fh).await.unwrap();
    assert_eq!(ok.verf, w1.verf);
    assert_eq!(attrs(ok.file_wcc.after).size, 1000);

    // FILE_SYNC and DATA_SYNC are answered as such, with the same verifier.
    let w3 = write(&mut c, &fh, 1000, b"tail", stable_how::FILE_SYNC)
        .await
        .unwrap();
    assert_eq!(
        (w3.count, w3.committed, w3.verf),
        (4, stable_how::FILE_SYNC, w1.verf)
    );
    let w4 = write(&mut c, &fh, 0, &data[..2], stable_how::DATA_SYNC)
        .await
        .unwrap();
    assert_eq!((w4.count, w4.committed), (2, stable_how::DATA_SYNC));
    let mut whole = data.clone();
    whole.extend_from_slice(b"tail");

    // READ: whole file with eof; a short read at EOF; a read wholly past EOF.
    let r = read(&mut c, &fh, 0, 65536).await.unwrap();
    assert_eq!((r.data.to_vec(), r.eof), (whole.clone(), true));
    assert_eq!(attrs(r.file_attributes).size, 1004);
    let r = read(&mut c, &fh, 0, 500).await.unwrap();
    assert_eq!((r.data.to_vec(), r.eof), (whole[..500].to_vec(), false));
    let r = read(&mut c, &fh, 900, 500).await.unwrap();
    assert_eq!((r.data.to_vec(), r.eof), (whole[900..].to_vec(), true));
    let r = read(&mut c, &fh, 504, 500).await.unwrap();
    assert_eq!((r.data.len(), r.eof), (500, true));
    let r = read(&mut c, &fh, 5000, 10).await.unwrap();
    assert_eq!((r.count, r.eof), (0, true));
    // READ and WRITE of a directory are ISDIR.
    assert_eq!(
        read(&mut c, &root, 0, 10).await.unwrap_err(),
        nfsstat3::NFS3ERR_ISDIR
    );
    let e = write(&mut c, &root, 0, b"x", stable_how::UNSTABLE)
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_ISDIR);

    // Another server instance has another verifier, so clients resend uncommitted data
    // after a restart.
    let srv2 = b.serve();
    let mut c2 = connect(&srv2).await;
    let root2 = c2.root_nfs_fh3();
    let (fh2, _) = lookup(&mut c2, &root2, "io").await.unwrap();
    let w5 = write(&mut c2, &fh2, 0, b"x", stable_how::UNSTABLE)
        .await
        .unwrap();
    assert_ne!(w5.verf, w1.verf);
    // ... and the first instance's handles are stale there.
    assert_eq!(
        getattr(&mut c2, &fh).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
}

on_both!(
    read_write_commit,
    read_write_commit_memfs,
    read_write_commit_loopback
);

// ---- CREATE, MKDIR, MKNOD ----

async fn create_family(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();

    // UNCHECKED creates, then on an existing name keeps the file and its mode but
    // applies a size of 0 (O_CREAT|O_TRUNC).
    let (fh, a) = create_how(&mut c, &root, "u", createhow3::UNCHECKED(mode(0o640)))
        .await
        .unwrap();
    assert_eq!((a.mode, a.size), (0o640, 0));
    write(&mut c, &fh, 0, b"hello", stable_how::FILE_SYNC)
        .await
        .unwrap();
    let trunc = sattr3 {
        mode: Nfs3Option::Some(0o600),
        size: Nfs3Option::Some(0),
        ..sattr3::default()
    };
    let (fh2, a2) = create_how(&mut c, &root, "u", createhow3::UNCHECKED(trunc))
        .await
        .unwrap();
    assert_eq!(
        (fh2, a2.fileid, a2.size, a2.mode),
        (fh.clone(), a.fileid, 0, 0o640)
    );

    // GUARDED on an existing name is EXIST and leaves the file alone.
    write(&mut c, &fh, 0, b"again", stable_how::FILE_SYNC)
        .await
        .unwrap();
    assert_eq!(
        create(&mut c, &root, "u", 0o600).await.unwrap_err(),
        nfsstat3::NFS3ERR_EXIST
    );
    assert_eq!(getattr(&mut c, &fh).await.unwrap().size, 5);

    // EXCLUSIVE: a retransmission (same verifier, a new xid so no reply cache) finds its
    // own file; another verifier is EXIST.
    let verf = createverf3([0x12, 0x34, 0x56, 0x78, 0x0a, 0xbc, 0xde, 0xf0]);
    let (xfh, xa) = create_how(&mut c, &root, "x", createhow3::EXCLUSIVE(verf))
        .await
        .unwrap();
    assert_eq!((xa.type_, xa.size), (ftype3::NF3REG, 0));
    let (xfh2, xa2) = create_how(&mut c, &root, "x", createhow3::EXCLUSIVE(verf))
        .await
        .unwrap();
    assert_eq!((xfh2, xa2.fileid), (xfh.clone(), xa.fileid));
    let other = createverf3([9; 8]);
    let e = create_how(&mut c, &root, "x", createhow3::EXCLUSIVE(other))
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_EXIST);
    // EXCLUSIVE on a name that is a directory is EXIST as well.
    mkdir(&mut c, &root, "dir", 0o755).await.unwrap();
    let e = create_how(&mut c, &root, "dir", createhow3::EXCLUSIVE(verf))
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_EXIST);
    // The client then sets the real attributes, as RFC 1813 says.
    let set = sattr3 {
        mode: Nfs3Option::Some(0o644),
        mtime: set_mtime::SET_TO_SERVER_TIME,
        atime: set_atime::SET_TO_SERVER_TIME,
        ..sattr3::default()
    };
    let xa3 = setattr(&mut c, &xfh, set, None).await.unwrap();
    assert_eq!(xa3.mode, 0o644);

    // MKDIR: a directory with the mode asked for and two links; twice is EXIST.
    let (dfh, da) = mkdir(&mut c, &root, "m", 0o750).await.unwrap();
    assert_eq!((da.type_, da.mode, da.nlink), (ftype3::NF3DIR, 0o750, 2));
    assert_eq!(
        mkdir(&mut c, &root, "m", 0o750).await.unwrap_err(),
        nfsstat3::NFS3ERR_EXIST
    );
    assert_eq!(getattr(&mut c, &root).await.unwrap().nlink, 4); // ., .., dir, m

    // MKNOD: a FIFO.
    let r = c
        .mknod(&MKNOD3args {
            where_: at(&dfh, "fifo"),
            what: mknoddata3::NF3FIFO(mode(0o620)),
        })
        .await;
    let ok = st(r).unwrap();
    let fa = attrs(ok.obj_attributes);
    assert_eq!((fa.type_, fa.mode), (ftype3::NF3FIFO, 0o620));
    let (ffh, _) = lookup(&mut c, &dfh, "fifo").await.unwrap();
    assert_eq!(ffh, handle(ok.obj));
    // READ of a FIFO through NFS is INVAL (no such thing as stateless pipe I/O).
    assert_eq!(
        read(&mut c, &ffh, 0, 10).await.unwrap_err(),
        nfsstat3::NFS3ERR_INVAL
    );
    // MKNOD on an existing name is EXIST.
    let r = c
        .mknod(&MKNOD3args {
            where_: at(&dfh, "fifo"),
            what: mknoddata3::NF3FIFO(mode(0o600)),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_EXIST);

    if b.memfs {
        // A character device, as root: type and major/minor come back.
        let r = c
            .mknod(&MKNOD3args {
                where_: at(&dfh, "null"),
                what: mknoddata3::NF3CHR(devicedata3 {
                    dev_attributes: mode(0o666),
                    spec: specdata3 {
                        specdata1: 1,
                        specdata2: 3,
                    },
                }),
            })
            .await;
        let ca = attrs(st(r).unwrap().obj_attributes);
        assert_eq!((ca.type_, ca.mode), (ftype3::NF3CHR, 0o666));
        assert_eq!((ca.rdev.specdata1, ca.rdev.specdata2), (1, 3));
        let (_, ca2) = lookup(&mut c, &dfh, "null").await.unwrap();
        assert_eq!((ca2.rdev.specdata1, ca2.rdev.specdata2), (1, 3));
    }
}

on_both!(create_family, create_family_memfs, create_family_loopback);

// ---- REMOVE, RMDIR, RENAME, LINK and stale handles ----

async fn namespace(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();

    // REMOVE: the name is gone and the handle is STALE for every procedure.
    let (gone, _) = create(&mut c, &root, "gone", 0o644).await.unwrap();
    write(&mut c, &gone, 0, b"data", stable_how::FILE_SYNC)
        .await
        .unwrap();
    remove(&mut c, &root, "gone").await.unwrap();
    assert_eq!(
        lookup(&mut c, &root, "gone").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    assert_eq!(
        remove(&mut c, &root, "gone").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    assert_eq!(
        getattr(&mut c, &gone).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
    assert_eq!(
        read(&mut c, &gone, 0, 4).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
    let e = write(&mut c, &gone, 0, b"x", stable_how::UNSTABLE)
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_STALE);
    let e = setattr(&mut c, &gone, mode(0o600), None).await.unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_STALE);
    assert_eq!(
        access(&mut c, &gone, ALL_ACCESS).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
    // REMOVE of a directory is refused (ISDIR on Linux, PERM in RFC 1813's words).
    let (dfh, _) = mkdir(&mut c, &root, "d", 0o755).await.unwrap();
    let e = remove(&mut c, &root, "d").await.unwrap_err();
    assert!(
        matches!(e, nfsstat3::NFS3ERR_ISDIR | nfsstat3::NFS3ERR_PERM),
        "{e:?}"
    );

    // RMDIR: a non-empty directory is NOTEMPTY; a file is NOTDIR; an empty one goes and
    // its handle is stale.
    create(&mut c, &dfh, "inner", 0o644).await.unwrap();
    assert_eq!(
        rmdir(&mut c, &root, "d").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOTEMPTY
    );
    assert_eq!(getattr(&mut c, &dfh).await.unwrap().type_, ftype3::NF3DIR);
    create(&mut c, &root, "plain", 0o644).await.unwrap();
    assert_eq!(
        rmdir(&mut c, &root, "plain").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOTDIR
    );
    remove(&mut c, &dfh, "inner").await.unwrap();
    rmdir(&mut c, &root, "d").await.unwrap();
    assert_eq!(
        getattr(&mut c, &dfh).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
    assert_eq!(getattr(&mut c, &root).await.unwrap().nlink, 2);

    // RENAME over an existing file: the source's inode takes the name, the old target
    // is gone.
    let (afh, aa) = create(&mut c, &root, "a", 0o644).await.unwrap();
    write(&mut c, &afh, 0, b"AAA", stable_how::FILE_SYNC)
        .await
        .unwrap();
    let (bfh, _) = create(&mut c, &root, "b", 0o644).await.unwrap();
    write(&mut c, &bfh, 0, b"BB", stable_how::FILE_SYNC)
        .await
        .unwrap();
    rename(&mut c, &root, "a", &root, "b").await.unwrap();
    assert_eq!(
        lookup(&mut c, &root, "a").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    let (nfh, na) = lookup(&mut c, &root, "b").await.unwrap();
    assert_eq!((nfh, na.fileid, na.size), (afh.clone(), aa.fileid, 3));
    assert_eq!(
        read(&mut c, &afh, 0, 10).await.unwrap().data.to_vec(),
        b"AAA".to_vec()
    );
    assert_eq!(
        getattr(&mut c, &bfh).await.unwrap_err(),
        nfsstat3::NFS3ERR_STALE
    );
    // RENAME of a missing name is NOENT.
    let e = rename(&mut c, &root, "a", &root, "c").await.unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_NOENT);

    // RENAME of a directory into its own subdirectory is INVAL; across directories it
    // works and `..` follows.
    let (top, _) = mkdir(&mut c, &root, "top", 0o755).await.unwrap();
    let (sub, _) = mkdir(&mut c, &top, "sub", 0o755).await.unwrap();
    let e = rename(&mut c, &root, "top", &sub, "loop")
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_INVAL);
    let e = rename(&mut c, &root, "top", &top, "self")
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_INVAL);
    let (other, other_a) = mkdir(&mut c, &root, "other", 0o755).await.unwrap();
    rename(&mut c, &top, "sub", &other, "moved").await.unwrap();
    let (moved, _) = lookup(&mut c, &other, "moved").await.unwrap();
    assert_eq!(moved, sub);
    let (up, up_a) = lookup(&mut c, &sub, "..").await.unwrap();
    assert_eq!((up, up_a.fileid), (other.clone(), other_a.fileid));
    // A directory over a non-empty directory is NOTEMPTY (or EXIST, both allowed).
    create(&mut c, &other, "keep", 0o644).await.unwrap();
    let e = rename(&mut c, &root, "top", &root, "other")
        .await
        .unwrap_err();
    assert!(
        matches!(e, nfsstat3::NFS3ERR_NOTEMPTY | nfsstat3::NFS3ERR_EXIST),
        "{e:?}"
    );

    // LINK: two names, one inode with two links, one handle.
    let (ofh, oa) = create(&mut c, &root, "orig", 0o644).await.unwrap();
    let r = c
        .link(&LINK3args {
            file: ofh.clone(),
            link: at(&other, "hard"),
        })
        .await;
    let ok = st(r).unwrap();
    let la = attrs(ok.file_attributes);
    assert_eq!((la.fileid, la.nlink), (oa.fileid, 2));
    assert!(ok.linkdir_wcc.after.is_some());
    let (hfh, ha) = lookup(&mut c, &other, "hard").await.unwrap();
    assert_eq!((hfh, ha.fileid, ha.nlink), (ofh.clone(), oa.fileid, 2));
    // LINK onto an existing name is EXIST; a directory cannot be linked.
    let r = c
        .link(&LINK3args {
            file: ofh.clone(),
            link: at(&other, "keep"),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_EXIST);
    let r = c
        .link(&LINK3args {
            file: other.clone(),
            link: at(&root, "dirlink"),
        })
        .await;
    let e = st(r).unwrap_err();
    assert!(
        matches!(e, nfsstat3::NFS3ERR_PERM | nfsstat3::NFS3ERR_ISDIR),
        "{e:?}"
    );
    // Removing one name leaves the other with one link.
    remove(&mut c, &root, "orig").await.unwrap();
    assert_eq!(getattr(&mut c, &ofh).await.unwrap().nlink, 1);
}

on_both!(namespace, namespace_memfs, namespace_loopback);

// ---- ACCESS and permission checks ----

async fn access_checks(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (pubd, _) = mkdir(&mut c, &root, "pub", 0o755).await.unwrap();
    let (ro, _) = create(&mut c, &pubd, "ro", 0o644).await.unwrap();
    write(&mut c, &ro, 0, b"public", stable_how::FILE_SYNC)
        .await
        .unwrap();
    let (x, _) = create(&mut c, &pubd, "x", 0o755).await.unwrap();
    let (none, _) = create(&mut c, &pubd, "none", 0o000).await.unwrap();
    let (mine, _) = create(&mut c, &pubd, "mine", 0o600).await.unwrap();
    let own = sattr3 {
        uid: Nfs3Option::Some(USER),
        gid: Nfs3Option::Some(USER),
        ..sattr3::default()
    };
    let ma = setattr(&mut c, &mine, own, None).await.unwrap();
    assert_eq!((ma.uid, ma.gid), (USER, USER));
    let rw = ACCESS3_READ | ACCESS3_MODIFY | ACCESS3_EXTEND;

    // Root gets every bit that means something for the object's type.
    let dir_bits = ACCESS3_READ | ACCESS3_LOOKUP | ACCESS3_MODIFY | ACCESS3_EXTEND | ACCESS3_DELETE;
    assert_eq!(access(&mut c, &pubd, ALL_ACCESS).await.unwrap(), dir_bits);
    assert_eq!(
        access(&mut c, &x, ALL_ACCESS).await.unwrap(),
        rw | ACCESS3_EXECUTE
    );
    assert_eq!(access(&mut c, &ro, ALL_ACCESS).await.unwrap(), rw);
    assert_eq!(access(&mut c, &none, ALL_ACCESS).await.unwrap(), rw);
    // Only the bits asked for are answered.
    assert_eq!(
        access(&mut c, &pubd, ACCESS3_LOOKUP).await.unwrap(),
        ACCESS3_LOOKUP
    );

    // An allowed unprivileged user gets what the mode bits give.
    let mut u = connect_as(&srv, USER).await;
    assert_eq!(u.root_nfs_fh3(), root);
    assert_eq!(
        access(&mut u, &pubd, ALL_ACCESS).await.unwrap(),
        ACCESS3_READ | ACCESS3_LOOKUP
    );
    assert_eq!(access(&mut u, &ro, ALL_ACCESS).await.unwrap(), ACCESS3_READ);
    assert_eq!(
        access(&mut u, &x, ALL_ACCESS).await.unwrap(),
        ACCESS3_READ | ACCESS3_EXECUTE
    );
    assert_eq!(access(&mut u, &none, ALL_ACCESS).await.unwrap(), 0);
    assert_eq!(access(&mut u, &mine, ALL_ACCESS).await.unwrap(), rw);

    // ... and READ, WRITE and namespace changes follow the same bits.
    assert_eq!(
        read(&mut u, &ro, 0, 100).await.unwrap().data.to_vec(),
        b"public".to_vec()
    );
    let e = write(&mut u, &ro, 0, b"mine now", stable_how::FILE_SYNC)
        .await
        .unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_ACCES);
    assert_eq!(
        read(&mut u, &none, 0, 10).await.unwrap_err(),
        nfsstat3::NFS3ERR_ACCES
    );
    assert_eq!(
        create(&mut u, &pubd, "new", 0o644).await.unwrap_err(),
        nfsstat3::NFS3ERR_ACCES
    );
    assert_eq!(
        remove(&mut u, &pubd, "ro").await.unwrap_err(),
        nfsstat3::NFS3ERR_ACCES
    );
    let e = setattr(&mut u, &ro, mode(0o666), None).await.unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_PERM);
    // The owner may always write through a handle, even to a file it made read-only.
    let m = setattr(&mut u, &mine, mode(0o400), None).await.unwrap();
    assert_eq!(m.mode, 0o400);
    let w = write(&mut u, &mine, 0, b"owner", stable_how::FILE_SYNC)
        .await
        .unwrap();
    assert_eq!(w.count, 5);
    assert_eq!(
        read(&mut u, &mine, 0, 10).await.unwrap().data.to_vec(),
        b"owner".to_vec()
    );
    // Files the user creates in a directory it may write are its own.
    let (home, _) = mkdir(&mut c, &root, "home", 0o777).await.unwrap();
    let (made, ma) = create(&mut u, &home, "made", 0o640).await.unwrap();
    assert_eq!((ma.uid, ma.mode), (USER, 0o640));
    assert_eq!(access(&mut u, &made, ALL_ACCESS).await.unwrap(), rw);
    assert_eq!(access(&mut c, &made, ALL_ACCESS).await.unwrap(), rw);
}

on_both!(access_checks, access_checks_memfs, access_checks_loopback);

// ---- READDIR and READDIRPLUS ----

/// Entries in the big directory.
const MANY: usize = 5000;

fn entry_name(i: usize) -> String {
    format!("entry-{i:04}")
}

async fn readdir_paging(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (dir, da) = mkdir(&mut c, &root, "big", 0o755).await.unwrap();
    for i in 0..MANY {
        if i % 500 == 0 {
            mkdir(&mut c, &dir, &entry_name(i), 0o755).await.unwrap();
        } else {
            create(&mut c, &dir, &entry_name(i), 0o644).await.unwrap();
        }
    }
    let mut expected: HashSet<Vec<u8>> = (0..MANY).map(|i| entry_name(i).into_bytes()).collect();
    expected.insert(b".".to_vec());
    expected.insert(b"..".to_vec());

    // READDIR in small pages, each resuming at the last cookie of the one before with
    // the verifier it returned.
    let mut order: Vec<(Vec<u8>, u64, u64)> = Vec::new();
    let mut cookie = 0;
    let mut verf = cookieverf3::default();
    let mut pages = 0;
    loop {
        let r = c
            .readdir(&READDIR3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                count: 8192,
            })
            .await;
        let ok = st(r).unwrap();
        // `count` bounds the whole READDIR3resok (RFC 1813 3.3.16).
        assert!(ok.packed_size() <= 8192, "{} bytes", ok.packed_size());
        assert_eq!(fileid(&ok.dir_attributes), da.fileid);
        if pages > 0 {
            assert_eq!(ok.cookieverf, verf, "the verifier changed between pages");
        }
        verf = ok.cookieverf;
        pages += 1;
        assert!(pages < 500, "READDIR does not end");
        let entries = ok.reply.entries.0;
        assert!(
            !entries.is_empty() || ok.reply.eof,
            "an empty page before eof"
        );
        for e in &entries {
            order.push((e.name.0.to_vec(), e.cookie, e.fileid));
        }
        if let Some(last) = entries.last() {
            cookie = last.cookie;
        }
        if ok.reply.eof {
            break;
        }
    }
    assert!(pages > 10, "{pages} pages: the listing was not paged");
    let names: Vec<&Vec<u8>> = order.iter().map(|(n, _, _)| n).collect();
    let unique: HashSet<Vec<u8>> = names.iter().map(|n| (*n).clone()).collect();
    assert_eq!(names.len(), unique.len(), "a name was listed twice");
    assert_eq!(unique, expected);
    let cookies: HashSet<u64> = order.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(cookies.len(), order.len(), "two entries share a cookie");
    assert!(!cookies.contains(&0));
    let ids: HashMap<&[u8], u64> = order.iter().map(|(n, _, f)| (n.as_slice(), *f)).collect();
    assert_eq!(ids[b".".as_slice()], da.fileid);
    assert_eq!(ids[b"..".as_slice()], 1);
    let (_, a42) = lookup(&mut c, &dir, &entry_name(42)).await.unwrap();
    assert_eq!(ids[entry_name(42).as_bytes()], a42.fileid);

    // Resuming at any cookie, not only a page's last, continues right after that entry.
    for at_index in [0, 1, 2, 100, 2500, order.len() - 2] {
        let r = c
            .readdir(&READDIR3args {
                dir: dir.clone(),
                cookie: order[at_index].1,
                cookieverf: verf,
                count: 4096,
            })
            .await;
        let ok = st(r).unwrap();
        let first = &ok.reply.entries.0[0];
        assert_eq!(
            first.name.0.to_vec(),
            order[at_index + 1].0,
            "after {at_index}"
        );
        assert_eq!(first.cookie, order[at_index + 1].1);
    }
    // The last cookie gives an empty, final page.
    let r = c
        .readdir(&READDIR3args {
            dir: dir.clone(),
            cookie: order[order.len() - 1].1,
            cookieverf: verf,
            count: 4096,
        })
        .await;
    let ok = st(r).unwrap();
    assert!(ok.reply.entries.0.is_empty() && ok.reply.eof);
    // A count too small for one entry is TOOSMALL; a cookie never handed out is
    // BAD_COOKIE; a file is NOTDIR.
    let r = c
        .readdir(&READDIR3args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 100,
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_TOOSMALL);
    let r = c
        .readdir(&READDIR3args {
            dir: dir.clone(),
            cookie: (1 << 63) | 77,
            cookieverf: verf,
            count: 4096,
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_BAD_COOKIE);
    let (file, _) = lookup(&mut c, &dir, &entry_name(1)).await.unwrap();
    let r = c
        .readdir(&READDIR3args {
            dir: file,
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 4096,
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_NOTDIR);

    // READDIRPLUS the same way: the same names once each, with attributes and handles
    // that match LOOKUP's.
    let mut plus: Vec<(Vec<u8>, u64)> = Vec::new();
    let mut handles: HashMap<Vec<u8>, nfs_fh3> = HashMap::new();
    let mut cookie = 0;
    let mut verf = cookieverf3::default();
    let mut pages = 0;
    loop {
        let r = c
            .readdirplus(&READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                dircount: 2048,
                maxcount: 32768,
            })
            .await;
        let ok = st(r).unwrap();
        // `maxcount` bounds the whole result, `dircount` its fileids, names and cookies.
        assert!(ok.packed_size() <= 32768, "{} bytes", ok.packed_size());
        let dir_bytes: usize = ok
            .reply
            .entries
            .0
            .iter()
            .map(|e| 8 + e.name.0.packed_size() + 8)
            .sum();
        assert!(
            dir_bytes <= 2048,
            "{dir_bytes} bytes of directory information"
        );
        if pages > 0 {
            assert_eq!(ok.cookieverf, verf);
        }
        verf = ok.cookieverf;
        pages += 1;
        assert!(pages < 500, "READDIRPLUS does not end");
        let entries = ok.reply.entries.0;
        assert!(!entries.is_empty() || ok.reply.eof);
        for e in entries {
            let n = e.name.0.to_vec();
            cookie = e.cookie;
            plus.push((n.clone(), e.cookie));
            if n == b".." {
                continue;
            }
            let a = attrs(e.name_attributes);
            assert_eq!(a.fileid, e.fileid);
            let is_dir = n == b"."
                || (0..MANY)
                    .step_by(500)
                    .any(|i| entry_name(i).as_bytes() == n);
            assert_eq!(
                a.type_ == ftype3::NF3DIR,
                is_dir,
                "{}",
                String::from_utf8_lossy(&n)
            );
            handles.insert(n, handle(e.name_handle));
        }
        if ok.reply.eof {
            break;
        }
    }
    assert!(pages > 10, "{pages} pages: READDIRPLUS was not paged");
    let names: HashSet<Vec<u8>> = plus.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), plus.len(), "READDIRPLUS listed a name twice");
    assert_eq!(names, expected);
    assert_eq!(handles[b".".as_slice()], dir);
    for i in [0, 1, 499, 500, 4999] {
        let (fh, _) = lookup(&mut c, &dir, &entry_name(i)).await.unwrap();
        assert_eq!(handles[entry_name(i).as_bytes()], fh);
    }
    // READDIR cookies and READDIRPLUS cookies are the same positions.
    let by_name: HashMap<&[u8], u64> = order.iter().map(|(n, c, _)| (n.as_slice(), *c)).collect();
    for (n, ck) in &plus {
        assert_eq!(by_name[n.as_slice()], *ck);
    }
}

on_both!(
    readdir_paging,
    readdir_paging_memfs,
    readdir_paging_loopback
);

// ---- FSSTAT, FSINFO, PATHCONF ----

async fn filesystem_info(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();

    let r = c
        .fsinfo(&FSINFO3args {
            fsroot: root.clone(),
        })
        .await;
    let info = st(r).unwrap();
    assert_eq!(attrs(info.obj_attributes).fileid, 1);
    assert_eq!(
        (info.rtmax, info.rtpref, info.wtmax, info.wtpref),
        (1 << 20, 1 << 20, 1 << 20, 1 << 20)
    );
    assert_eq!(
        (info.rtmult, info.wtmult, info.dtpref),
        (4096, 4096, 128 * 1024)
    );
    assert_eq!(info.maxfilesize, i64::MAX as u64);
    assert_eq!(
        info.time_delta,
        nfstime3 {
            seconds: 0,
            nseconds: 1
        }
    );
    assert_eq!(
        info.properties,
        FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME
    );

    let r = c
        .pathconf(&PATHCONF3args {
            object: root.clone(),
        })
        .await;
    let pc = st(r).unwrap();
    assert_eq!(pc.name_max, 255);
    assert!(pc.linkmax >= 1000);
    assert!(pc.no_trunc && pc.chown_restricted && pc.case_preserving);
    assert!(!pc.case_insensitive);
    // A name over 255 bytes is NAMETOOLONG, never truncated.
    let long = "n".repeat(256);
    let e = create(&mut c, &root, &long, 0o644).await.unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_NAMETOOLONG);

    let r = c
        .fsstat(&FSSTAT3args {
            fsroot: root.clone(),
        })
        .await;
    let s = st(r).unwrap();
    assert_eq!(fileid(&s.obj_attributes), 1);
    assert!(
        s.tbytes > 0 && s.fbytes <= s.tbytes && s.abytes <= s.fbytes,
        "{s:?}"
    );
    assert!(
        s.tfiles > 0 && s.ffiles <= s.tfiles && s.afiles == s.ffiles,
        "{s:?}"
    );
    assert_eq!(s.invarsec, 0);
    // Every procedure on a handle of another server instance is STALE.
    let mut foreign = root.data.to_vec();
    foreign[0] ^= 0x80;
    let foreign = nfs_fh3 {
        data: Opaque::owned(foreign),
    };
    let r = c
        .fsstat(&FSSTAT3args {
            fsroot: foreign.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    let r = c
        .fsinfo(&FSINFO3args {
            fsroot: foreign.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    let r = c
        .pathconf(&PATHCONF3args {
            object: foreign.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), nfsstat3::NFS3ERR_STALE);
    // A handle of the wrong shape is BADHANDLE.
    let short = nfs_fh3 {
        data: Opaque::owned(vec![1, 2, 3]),
    };
    assert_eq!(
        getattr(&mut c, &short).await.unwrap_err(),
        nfsstat3::NFS3ERR_BADHANDLE
    );
}

on_both!(
    filesystem_info,
    filesystem_info_memfs,
    filesystem_info_loopback
);

async fn fsstat(c: &mut Conn, root: &nfs_fh3) -> FSSTAT3resok {
    let r = c
        .fsstat(&FSSTAT3args {
            fsroot: root.clone(),
        })
        .await;
    st(r).unwrap()
}

#[tokio::test]
async fn fsstat_follows_usage_memfs() {
    let b = Backend {
        fs: Arc::new(MemFs::new(MemFsOptions {
            size_limit: Some(4 << 20),
            max_inodes: Some(4),
            ..MemFsOptions::default()
        })),
        memfs: true,
        _dir: None,
    };
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let s0 = fsstat(&mut c, &root).await;
    assert_eq!((s0.tbytes, s0.tfiles, s0.ffiles), (4 << 20, 4, 3));
    let (fh, _) = create(&mut c, &root, "f", 0o644).await.unwrap();
    let mb = vec![1u8; 1 << 20];
    write(&mut c, &fh, 0, &mb, stable_how::FILE_SYNC)
        .await
        .unwrap();
    let s1 = fsstat(&mut c, &root).await;
    assert_eq!(s1.ffiles, 2);
    assert!(s1.fbytes + (1 << 20) <= s0.fbytes, "{s0:?} -> {s1:?}");
    // Past the size limit WRITE is NOSPC; past the inode limit CREATE is. These UNSTABLE
    // writes go behind their replies, so the failure comes with a later WRITE, or at the
    // latest with the COMMIT, depending on how fast the writer thread is.
    let mut status = nfsstat3::NFS3_OK;
    for i in 1..8u64 {
        if let Err(e) = write(&mut c, &fh, i << 20, &mb, stable_how::UNSTABLE).await {
            status = e;
            break;
        }
    }
    if status == nfsstat3::NFS3_OK {
        status = commit(&mut c, &fh).await.err().unwrap_or(nfsstat3::NFS3_OK);
    }
    assert_eq!(status, nfsstat3::NFS3ERR_NOSPC);
    create(&mut c, &root, "g", 0o644).await.unwrap();
    mkdir(&mut c, &root, "h", 0o755).await.unwrap();
    let e = create(&mut c, &root, "i", 0o644).await.unwrap_err();
    assert_eq!(e, nfsstat3::NFS3ERR_NOSPC);
    assert_eq!(fsstat(&mut c, &root).await.ffiles, 0);
}

// ---- a large file ----

/// Deterministic data for chunk `i` of the big file.
fn chunk(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A word-wise checksum (the file is a whole number of words).
fn checksum(mut h: u64, data: &[u8]) -> u64 {
    for w in data.as_chunks::<8>().0 {
        let w = u64::from_le_bytes(*w);
        h = (h ^ w).wrapping_mul(0x0100_0000_01b3).rotate_left(23);
    }
    h
}

async fn big_file(b: Backend) {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: u64 = 64;
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (fh, _) = create(&mut c, &root, "big", 0o644).await.unwrap();
    let mut sum_written = 0xcbf2_9ce4_8422_2325;
    let mut verf = None;
    for i in 0..CHUNKS {
        let data = chunk(i, CHUNK);
        sum_written = checksum(sum_written, &data);
        let w = write(&mut c, &fh, i * CHUNK as u64, &data, stable_how::UNSTABLE)
            .await
            .unwrap();
        assert_eq!(
            (w.count as usize, w.committed),
            (CHUNK, stable_how::UNSTABLE)
        );
        assert_eq!(*verf.get_or_insert(w.verf), w.verf);
    }
    let ok = commit(&mut c, &fh).await.unwrap();
    assert_eq!(Some(ok.verf), verf);
    assert_eq!(attrs(ok.file_wcc.after).size, CHUNKS * CHUNK as u64);
    let mut sum_read = 0xcbf2_9ce4_8422_2325;
    let mut total = 0u64;
    for i in 0..CHUNKS {
        let r = read(&mut c, &fh, i * CHUNK as u64, CHUNK as u32)
            .await
            .unwrap();
        assert_eq!(r.data.len(), CHUNK);
        assert_eq!(r.eof, i == CHUNKS - 1);
        total += r.data.len() as u64;
        sum_read = checksum(sum_read, &r.data);
    }
    assert_eq!(total, CHUNKS * CHUNK as u64);
    assert_eq!(sum_read, sum_written);
    let r = read(&mut c, &fh, total, CHUNK as u32).await.unwrap();
    assert_eq!((r.count, r.eof), (0, true));
}

on_both!(big_file, big_file_memfs, big_file_loopback);

// ---- failure replies of every procedure ----

/// Every procedure given a handle of a removed object answers STALE, and the crate
/// decodes each failure body to its last byte (it refuses replies with bytes left over),
/// which checks the encoding of the failure results too.
async fn stale_everywhere(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (file, _) = create(&mut c, &root, "file", 0o644).await.unwrap();
    let (dir, _) = mkdir(&mut c, &root, "dir", 0o755).await.unwrap();
    let (live, _) = create(&mut c, &root, "live", 0o644).await.unwrap();
    remove(&mut c, &root, "file").await.unwrap();
    rmdir(&mut c, &root, "dir").await.unwrap();
    let stale = nfsstat3::NFS3ERR_STALE;

    assert_eq!(getattr(&mut c, &file).await.unwrap_err(), stale);
    assert_eq!(
        setattr(&mut c, &file, mode(0o600), None).await.unwrap_err(),
        stale
    );
    assert_eq!(lookup(&mut c, &dir, "x").await.unwrap_err(), stale);
    assert_eq!(
        access(&mut c, &file, ACCESS3_READ).await.unwrap_err(),
        stale
    );
    let r = c
        .readlink(&READLINK3args {
            symlink: file.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    assert_eq!(read(&mut c, &file, 0, 1).await.unwrap_err(), stale);
    let e = write(&mut c, &file, 0, b"x", stable_how::FILE_SYNC)
        .await
        .unwrap_err();
    assert_eq!(e, stale);
    assert_eq!(create(&mut c, &dir, "x", 0o644).await.unwrap_err(), stale);
    assert_eq!(mkdir(&mut c, &dir, "x", 0o755).await.unwrap_err(), stale);
    let r = c
        .symlink(&SYMLINK3args {
            where_: at(&dir, "x"),
            symlink: symlinkdata3 {
                symlink_attributes: sattr3::default(),
                symlink_data: nfspath3(Opaque::borrowed(b"t")),
            },
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .mknod(&MKNOD3args {
            where_: at(&dir, "x"),
            what: mknoddata3::NF3FIFO(mode(0o644)),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    assert_eq!(remove(&mut c, &dir, "x").await.unwrap_err(), stale);
    assert_eq!(rmdir(&mut c, &dir, "x").await.unwrap_err(), stale);
    assert_eq!(
        rename(&mut c, &dir, "x", &root, "y").await.unwrap_err(),
        stale
    );
    assert_eq!(
        rename(&mut c, &root, "live", &dir, "y").await.unwrap_err(),
        stale
    );
    let r = c
        .link(&LINK3args {
            file: file.clone(),
            link: at(&root, "y"),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .link(&LINK3args {
            file: live.clone(),
            link: at(&dir, "y"),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .readdir(&READDIR3args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 4096,
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .readdirplus(&READDIRPLUS3args {
            dir: dir.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            dircount: 4096,
            maxcount: 8192,
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .fsstat(&FSSTAT3args {
            fsroot: file.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .fsinfo(&FSINFO3args {
            fsroot: file.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    let r = c
        .pathconf(&PATHCONF3args {
            object: file.clone(),
        })
        .await;
    assert_eq!(st(r).unwrap_err(), stale);
    assert_eq!(commit(&mut c, &file).await.unwrap_err(), stale);
    // Nothing was created anywhere, and the live file is untouched.
    assert_eq!(
        lookup(&mut c, &root, "y").await.unwrap_err(),
        nfsstat3::NFS3ERR_NOENT
    );
    assert_eq!(getattr(&mut c, &live).await.unwrap().nlink, 1);
}

on_both!(
    stale_everywhere,
    stale_everywhere_memfs,
    stale_everywhere_loopback
);

// ---- several clients at once ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients() {
    const CLIENTS: usize = 8;
    const FILES: usize = 40;
    let b = Backend::memfs();
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (shared, _) = mkdir(&mut c, &root, "shared", 0o777).await.unwrap();
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut conn = connect(&srv).await;
        let dir = shared.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..FILES {
                let n = format!("c{client}-{i}");
                let (fh, _) = create(&mut conn, &dir, &n, 0o644).await.unwrap();
                let data = chunk((client * FILES + i) as u64, 3000 + i);
                let w = write(&mut conn, &fh, 0, &data, stable_how::UNSTABLE)
                    .await
                    .unwrap();
                assert_eq!(w.count as usize, data.len());
                let r = read(&mut conn, &fh, 0, 65536).await.unwrap();
                assert_eq!(r.data.to_vec(), data, "{n}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = c
        .readdir(&READDIR3args {
            dir: shared,
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 1 << 20,
        })
        .await;
    let ok = st(r).unwrap();
    assert!(ok.reply.eof);
    assert_eq!(ok.reply.entries.0.len(), CLIENTS * FILES + 2);
}

// ---- mounting a subdirectory ----

async fn mount_subdirectory(b: Backend) {
    let srv = b.serve();
    let mut c = connect(&srv).await;
    let root = c.root_nfs_fh3();
    let (d, da) = mkdir(&mut c, &root, "d", 0o755).await.unwrap();
    let (sub, _) = mkdir(&mut c, &d, "sub", 0o755).await.unwrap();
    create(&mut c, &root, "file", 0o644).await.unwrap();
    // A fresh server instance knows nothing of the tree yet: MNT must learn the parents
    // of the directory it resolves, or `..` below the mounted directory is lost.
    drop(c);
    drop(srv);
    let srv = b.serve();
    let export = srv.export_path();
    let mut s = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", format!("{export}/d/sub"))
        .connect_from_privileged_port(false)
        .portmapper_port(srv.port())
        .credential(cred(0, 0))
        .mount()
        .await
        .unwrap();
    let mounted = s.root_nfs_fh3();
    assert_ne!(
        mounted, sub,
        "handles of another server instance were reused"
    );
    let (up, up_a) = lookup(&mut s, &mounted, "..").await.unwrap();
    assert_eq!(up_a.fileid, da.fileid);
    let (top, top_a) = lookup(&mut s, &up, "..").await.unwrap();
    assert_eq!(top_a.fileid, 1);
    let (_, fa) = lookup(&mut s, &top, "file").await.unwrap();
    assert_eq!(fa.type_, ftype3::NF3REG);
    // READDIR's `..` names the parent too.
    let r = s
        .readdir(&READDIR3args {
            dir: mounted.clone(),
            cookie: 0,
            cookieverf: cookieverf3::default(),
            count: 4096,
        })
        .await;
    let ok = st(r).unwrap();
    let dotdot = ok
        .reply
        .entries
        .0
        .iter()
        .find(|e| e.name.0.as_ref() == b"..");
    assert_eq!(dotdot.map(|e| e.fileid), Some(da.fileid));
    // A path through a file is NOTDIR, a missing one NOENT.
    for (path, want) in [
        ("file", mountstat3::MNT3ERR_NOTDIR),
        ("d/missing", mountstat3::MNT3ERR_NOENT),
    ] {
        let r = Nfs3ConnectionBuilder::new(TokioConnector, "127.0.0.1", format!("{export}/{path}"))
            .connect_from_privileged_port(false)
            .portmapper_port(srv.port())
            .credential(cred(0, 0))
            .mount()
            .await;
        let e = mount_err(r);
        assert!(
            matches!(&e, ConnectError::Mount(MountError::Denied(s)) if *s as u32 == want as u32),
            "{path}: {e:?}"
        );
    }
}

on_both!(
    mount_subdirectory,
    mount_subdirectory_memfs,
    mount_subdirectory_loopback
);
