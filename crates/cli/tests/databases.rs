//! Databases as sources, against real servers: a private MariaDB and a
//! private PostgreSQL that scripts/servers.sh starts on Unix sockets
//! (STRATA_TEST_MYSQL_SOCKET, STRATA_TEST_PGHOST, STRATA_TEST_PGUSER).
//! Without them the tests say so and pass, unless STRATA_REQUIRE_SERVERS
//! is set. Each test makes databases of its own names, so they run side
//! by side on the same servers.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{write, Env};

fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) if std::env::var_os("STRATA_REQUIRE_SERVERS").is_some() => {
            panic!("{var} is not set: run the tests with scripts/test.sh, which starts the servers")
        }
        Err(_) => {
            eprintln!("{var} is not set: skipped (scripts/test.sh starts the servers)");
            None
        }
    }
}

/// A name no other test uses.
fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}", std::process::id())
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn listing(env: &Env, extra: &[(&str, &str)]) -> String {
    let mut cmd = env.std_cmd();
    cmd.envs(extra.iter().copied()).args(["ls", "latest"]);
    ok(cmd.output().unwrap())
}

struct Maria {
    socket: String,
}

impl Maria {
    fn new() -> Option<Maria> {
        server("STRATA_TEST_MYSQL_SOCKET").map(|socket| Maria { socket })
    }

    fn sql(&self, statements: &str) -> String {
        ok(Command::new("mariadb")
            .args([
                "--no-defaults",
                "--batch",
                "--skip-column-names",
                "--default-character-set=utf8mb4",
            ])
            .arg(format!("--socket={}", self.socket))
            .args(["--user=root", "--execute", statements])
            .output()
            .unwrap())
    }

    /// An option file for root, as ~/.my.cnf would hold.
    fn option_file(&self, dir: &Path, user: &str, password: Option<&str>) -> String {
        let path = dir.join(format!("{user}.cnf"));
        let mut text = format!("[client]\nsocket={}\nuser={user}\n", self.socket);
        if let Some(p) = password {
            text += &format!("password={p}\n");
        }
        write(&path, text.as_bytes());
        path.to_str().unwrap().to_string()
    }

    fn checksum(&self, table: &str) -> String {
        let out = self.sql(&format!("CHECKSUM TABLE {table}"));
        out.split('\t').nth(1).unwrap().trim().to_string()
    }

    /// A database with binary, NULL and non-ASCII values, a trigger and a
    /// routine.
    fn shop(&self, db: &str) {
        self.sql(&format!(
            "CREATE DATABASE {db} CHARACTER SET utf8mb4;
             USE {db};
             CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), data BLOB, price DECIMAL(8,2));
             INSERT INTO items VALUES (1, 'tea', 0x00FF0A0D27225C, 2.50), (2, 'ch\u{e2}teau \u{1f377}', NULL, 30.00), (3, NULL, '', 0);
             CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, item INT);
             CREATE TRIGGER logged AFTER INSERT ON items FOR EACH ROW INSERT INTO log (item) VALUES (NEW.id);
             CREATE FUNCTION double_it(x INT) RETURNS INT DETERMINISTIC RETURN 2 * x;
             INSERT INTO items VALUES (4, 'cup', 0x01, 1);"
        ));
    }

    fn drop(&self, dbs: &[&str]) {
        for db in dbs {
            self.sql(&format!("DROP DATABASE IF EXISTS {db}"));
        }
    }
}

#[test]
fn mysql_all_dumps_one_file_per_database_and_one_restores_exactly() {
    let Some(maria) = Maria::new() else { return };
    let env = Env::new();
    env.init();
    let (shop, crm, copy, piped) = (
        unique("shop"),
        unique("crm"),
        unique("copy"),
        unique("piped"),
    );
    maria.shop(&shop);
    maria.sql(&format!(
        "CREATE DATABASE {crm}; CREATE TABLE {crm}.c (x INT); INSERT INTO {crm}.c VALUES (5);"
    ));
    let cnf = maria.option_file(env.dir.path(), "root", None);
    let out = env
        .cmd()
        .args([
            "backup",
            "--json",
            "--mysql",
            "all",
            "--mysql-defaults-file",
            &cnf,
        ])
        .output()
        .unwrap();
    // Other tests create and drop databases on the same server at the
    // same time: one dropped between listing and dumping fails (exit 3),
    // which must never be one of ours.
    let errors = stderr_of(&out);
    assert!(matches!(out.status.code(), Some(0 | 3)), "{errors}");
    assert!(
        !errors.contains(&shop) && !errors.contains(&crm),
        "{errors}"
    );
    let files = listing(&env, &[]);
    for want in [
        format!("/mysql/{shop}.sql"),
        format!("/mysql/{crm}.sql"),
        "/mysql/_grants.sql".into(),
        "/mysql/mysql.sql".into(),
    ] {
        assert!(
            files.lines().any(|l| l == want),
            "{want} missing from {files}"
        );
    }
    for system in ["information_schema", "performance_schema", "sys"] {
        assert!(
            !files.contains(&format!("/mysql/{system}.sql")),
            "{system} dumped: {files}"
        );
    }
    let grants = ok(env
        .cmd()
        .args(["dump", "latest", "mysql/_grants.sql"])
        .output()
        .unwrap());
    assert!(grants.contains("strata_pw"), "{grants}");

    // restore-db into a new database: the same rows, trigger and routine.
    let out = env
        .cmd()
        .args([
            "restore-db",
            "latest",
            &shop,
            "--as",
            &copy,
            "--create",
            "--mysql-defaults-file",
            &cnf,
        ])
        .output()
        .unwrap();
    ok(out);
    for table in ["items", "log"] {
        assert_eq!(
            maria.checksum(&format!("{shop}.{table}")),
            maria.checksum(&format!("{copy}.{table}"))
        );
    }
    assert_eq!(
        maria.sql(&format!("SELECT {copy}.double_it(21)")).trim(),
        "42"
    );
    maria.sql(&format!(
        "INSERT INTO {copy}.items VALUES (9, 'x', NULL, 1)"
    ));
    // One row logged before the backup, one by the restored trigger.
    assert_eq!(
        maria
            .sql(&format!("SELECT COUNT(*) FROM {copy}.log"))
            .trim(),
        "2"
    );

    // The README's way: strata dump … | mariadb DATABASE.
    maria.sql(&format!("CREATE DATABASE {piped}"));
    let mut dump = env
        .std_cmd()
        .args(["dump", "latest", &format!("mysql/{shop}.sql")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let status = Command::new("mariadb")
        .args([
            "--no-defaults",
            &format!("--socket={}", maria.socket),
            "--user=root",
            &piped,
        ])
        .stdin(dump.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(dump.wait().unwrap().success());
    assert_eq!(
        maria.checksum(&format!("{shop}.items")),
        maria.checksum(&format!("{piped}.items"))
    );

    // Unchanged databases dump to the same bytes: a second backup adds
    // only its trees.
    let both = format!("{shop},{crm}");
    env.backup(&["--mysql", &both, "--mysql-defaults-file", &cnf]);
    let second = env.backup(&["--mysql", &both, "--mysql-defaults-file", &cnf]);
    assert!(
        second["summary"]["data_added"].as_u64().unwrap() < 4 << 10,
        "{second}"
    );
    maria.drop(&[&shop, &crm, &copy, &piped]);
}

#[test]
fn mysql_dumps_that_fail_leave_a_partial_snapshot_without_their_files() {
    let Some(maria) = Maria::new() else { return };
    let env = Env::new();
    env.init();
    let shop = unique("shopf");
    maria.shop(&shop);
    let dir = env.path("etc");
    write(&dir.join("hosts"), b"localhost\n");
    let dir = dir.to_str().unwrap();
    // A wrong password: nothing can be listed.
    let wrong = maria.option_file(env.dir.path(), "strata_pw", Some("wrong-password"));
    let out = env
        .cmd()
        .args([
            "backup",
            dir,
            "--mysql",
            "all",
            "--mysql-defaults-file",
            &wrong,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("Access denied"),
        "{}",
        stderr_of(&out)
    );
    let files = listing(&env, &[]);
    assert!(!files.contains("/mysql"), "{files}");
    assert!(files.contains("/etc/hosts"));
    // A named database that cannot be dumped, beside one that can.
    let root = maria.option_file(env.dir.path(), "root", None);
    let missing = unique("nosuch");
    let out = env
        .cmd()
        .args([
            "backup",
            dir,
            "--mysql",
            &format!("{shop},{missing}"),
            "--mysql-defaults-file",
            &root,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("mysql/{missing}.sql")),
        "{}",
        stderr_of(&out)
    );
    let files = listing(&env, &[]);
    assert!(files.contains(&format!("/mysql/{shop}.sql")), "{files}");
    assert!(!files.contains(&missing), "{files}");
    // The server is down (no socket there).
    let out = env
        .cmd()
        .args([
            "backup",
            dir,
            "--mysql",
            &shop,
            "--mysql-defaults-file",
            &root,
            "--mysql-option=--socket=/nonexistent/mysql.sock",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(!listing(&env, &[]).contains("/mysql"));
    // A password on the command line is refused before anything runs.
    let out = env
        .cmd()
        .args([
            "backup",
            dir,
            "--mysql",
            "all",
            "--mysql-option=--password=secret",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    maria.drop(&[&shop]);
}

struct Pg {
    host: String,
    user: String,
}

impl Pg {
    fn new() -> Option<Pg> {
        let host = server("STRATA_TEST_PGHOST")?;
        let user = server("STRATA_TEST_PGUSER")?;
        Some(Pg { host, user })
    }

    fn env(&self) -> [(&str, &str); 2] {
        [("PGHOST", &self.host), ("PGUSER", &self.user)]
    }

    fn sql(&self, db: &str, statements: &str) -> String {
        ok(Command::new("psql")
            .envs(self.env())
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-c",
                statements,
            ])
            .output()
            .unwrap())
    }

    fn fingerprint(&self, db: &str) -> String {
        self.sql(
            db,
            "SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM items t",
        )
    }
}

#[test]
fn postgres_all_dumps_one_file_per_database_and_one_restores_exactly() {
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    env.init();
    let (shop, copy) = (unique("pshop"), unique("pcopy"));
    pg.sql("postgres", &format!("CREATE DATABASE {shop}"));
    pg.sql(
        &shop,
        "CREATE TABLE items (id int PRIMARY KEY, name text, data bytea, price numeric);
         INSERT INTO items VALUES (1, 'tea', '\\x00ff0a'::bytea, 2.5), (2, 'ch\u{e2}teau', NULL, 30), (3, NULL, '', 0);
         CREATE FUNCTION double_it(x int) RETURNS int AS 'SELECT 2 * x' LANGUAGE sql;",
    );
    let mut cmd = env.std_cmd();
    cmd.envs(pg.env())
        .args(["backup", "--json", "--postgres", "all"]);
    let text = ok(cmd.output().unwrap());
    assert!(text.contains("\"partial\":false"), "{text}");
    let files = listing(&env, &pg.env());
    for want in [
        format!("/postgresql/{shop}.sql"),
        "/postgresql/_globals.sql".into(),
        "/postgresql/postgres.sql".into(),
    ] {
        assert!(
            files.lines().any(|l| l == want),
            "{want} missing from {files}"
        );
    }
    assert!(
        !files.contains("template0") && !files.contains("template1"),
        "{files}"
    );
    let mut cmd = env.std_cmd();
    cmd.envs(pg.env())
        .args(["restore-db", "latest", &shop, "--as", &copy, "--create"]);
    ok(cmd.output().unwrap());
    assert_eq!(pg.fingerprint(&shop), pg.fingerprint(&copy));
    assert_eq!(pg.sql(&copy, "SELECT double_it(21)").trim(), "42");
    // Restoring again into the same database fails, clearly, and changes
    // nothing (one transaction that stops at the first error).
    let mut cmd = env.std_cmd();
    cmd.envs(pg.env())
        .args(["restore-db", "latest", &shop, "--as", &copy]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("already exists"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(pg.fingerprint(&shop), pg.fingerprint(&copy));
    for db in [&shop, &copy] {
        pg.sql("postgres", &format!("DROP DATABASE {db}"));
    }
}

#[test]
fn postgres_dumps_that_fail_leave_a_partial_snapshot_without_their_files() {
    let Some(pg) = Pg::new() else { return };
    let env = Env::new();
    env.init();
    let dir = env.path("etc");
    write(&dir.join("hosts"), b"localhost\n");
    let dir = dir.to_str().unwrap();
    // The server is down: no socket in that directory.
    let empty = env.path("nosocket");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = env.std_cmd();
    cmd.env("PGHOST", &empty)
        .env("PGUSER", &pg.user)
        .args(["backup", dir, "--postgres", "all"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("postgresql"),
        "{}",
        stderr_of(&out)
    );
    assert!(!listing(&env, &[]).contains("/postgresql"));
    // A wrong password: never a prompt, a failure.
    let mut cmd = env.std_cmd();
    cmd.env("PGHOST", &pg.host)
        .env("PGUSER", "strata_pw")
        .env("PGPASSWORD", "wrong-password")
        .args(["backup", dir, "--postgres", "postgres"])
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("password authentication failed"),
        "{}",
        stderr_of(&out)
    );
    let files = listing(&env, &[]);
    assert!(!files.contains("/postgresql/postgres.sql"), "{files}");
}

// Found by attacking database sources (2026-11-30).

#[test]
fn restoring_server_wide_files_failed_on_users_and_roles_every_server_has() {
    let env = Env::new();
    env.init();
    if let Some(maria) = Maria::new() {
        let cnf = maria.option_file(env.dir.path(), "root", None);
        let db = unique("grantsrc");
        maria.sql(&format!("CREATE DATABASE {db}"));
        env.backup(&["--mysql", &db, "--mysql-defaults-file", &cnf]);
        let out = env
            .cmd()
            .args([
                "restore-db",
                "latest",
                "_grants",
                "--mysql-defaults-file",
                &cnf,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
        maria.drop(&[&db]);
    }
    if let Some(pg) = Pg::new() {
        let mut cmd = env.std_cmd();
        cmd.envs(pg.env())
            .args(["backup", "--postgres", "postgres"]);
        ok(cmd.output().unwrap());
        let mut cmd = env.std_cmd();
        cmd.envs(pg.env())
            .args(["restore-db", "latest", "_globals"]);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
}

#[test]
fn a_database_whose_name_starts_with_an_underscore_could_not_be_restored() {
    let Some(maria) = Maria::new() else { return };
    let env = Env::new();
    env.init();
    let cnf = maria.option_file(env.dir.path(), "root", None);
    let (db, copy) = (unique("_lead"), unique("leadcopy"));
    maria.sql(&format!(
        "CREATE DATABASE {db}; CREATE TABLE {db}.t (x INT); INSERT INTO {db}.t VALUES (7);"
    ));
    env.backup(&["--mysql", &db, "--mysql-defaults-file", &cnf]);
    let out = env
        .cmd()
        .args([
            "restore-db",
            "latest",
            &db,
            "--as",
            &copy,
            "--create",
            "--mysql-defaults-file",
            &cnf,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(maria.sql(&format!("SELECT x FROM {copy}.t")).trim(), "7");
    maria.drop(&[&db, &copy]);
}
