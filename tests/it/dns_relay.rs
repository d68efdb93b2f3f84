//! The relay that carries PowerDNS API requests into a server's container, against a real
//! PowerDNS server (the lab's image, run here as `auth` with a key file, its API on the
//! container's loopback): many requests, from several clients, travel over one relay (the
//! Engine shows one exec where there used to be one per request, and the key in none of
//! them); a server restarted between two calls answers the second on a fresh relay, with
//! no error; a server that stops answering (paused) is a request with no answer within
//! the bound, as before, and answers again on a fresh relay once it runs. Through a lab
//! host's SSH connection, a relay whose connection dropped (the host restarted) is
//! replaced too, over a new connection.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry_activities::container::Endpoint;
use foundry_activities::dns::PdnsApi;
use foundry_core::secret::{FileSecretStore, SecretStore};
use foundry_core::{Activity as _, ActivityCx, SecretValue};
use foundry_tests::docker::{Cleanup, docker, engine, unique};
use foundry_tests::lab::Lab;
use foundry_tests::{Home, kill, wait_for};

/// What the relay's shell is named in its exec's command line.
const RELAY_NAME: &str = "foundry-pdns-api";

/// A PowerDNS server with an API key of its own, removed when dropped.
struct Server {
    name: String,
    key: String,
    home: Home,
    _cleanup: Cleanup,
}

impl Server {
    fn start(prefix: &str) -> Server {
        engine();
        let image = foundry_workflows::dns::PDNS_IMAGE;
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let cx = ActivityCx::standalone("image");
        rt.block_on(
            foundry_workflows::dns::build_image(image, "http://deb.debian.org/debian").apply(&cx),
        )
        .expect("the PowerDNS image");
        let home = Home::new();
        let name = unique(prefix);
        let key = format!("relay-{:016x}", rand::random::<u64>());
        let conf = home.scratch().join("api-key.conf");
        std::fs::write(&conf, format!("api-key={key}\n")).expect("key file");
        let cleanup = Cleanup {
            containers: vec![name.clone()],
            networks: vec![],
        };
        let run = docker(&[
            "run",
            "--detach",
            "--name",
            &name,
            "--mount",
            &format!(
                "type=bind,src={},dst=/etc/powerdns/pdns.d/foundry-api-key.conf,readonly",
                conf.display()
            ),
            "--mount",
            "type=volume,dst=/var/lib/powerdns",
            image,
            "auth",
        ]);
        assert!(run.status.success(), "{run:?}");
        let server = Server {
            name,
            key,
            home,
            _cleanup: cleanup,
        };
        server.wait_for_api();
        server
    }

    /// Until the API answers on the container's loopback, asked by a `docker exec` of its
    /// own (bounded).
    fn wait_for_api(&self) {
        const ASK: &str = r#"exec 3<>/dev/tcp/127.0.0.1/8081 || exit 1
printf 'GET /api/v1/servers HTTP/1.0\r\n\r\n' >&3
head -c 5 <&3"#;
        wait_for("PowerDNS's API", Duration::from_secs(60), || {
            let out = docker(&["exec", &self.name, "bash", "-c", ASK]);
            out.status.success() && out.stdout.starts_with(b"HTTP/")
        });
    }

    /// The API as Foundry reaches it, with a standalone context that holds its key.
    fn api(&self) -> (PdnsApi, ActivityCx) {
        let store = Arc::new(FileSecretStore::new(self.home.scratch().join("secrets")));
        let key = store.put(&SecretValue::new(self.key.clone())).expect("put");
        let cx = ActivityCx::standalone("dns-relay-test").with_secrets(store);
        (
            PdnsApi::new(Endpoint::default(), self.name.clone(), key),
            cx,
        )
    }
}

/// The Engine's exec creations in one container, followed from before the calls.
struct Execs {
    child: Child,
    log: std::path::PathBuf,
}

impl Execs {
    fn follow(server: &Server) -> Execs {
        let log = server.home.scratch().join("execs.log");
        let file = std::fs::File::create(&log).expect("events log");
        let child = Command::new("docker")
            .args([
                "events",
                "--filter",
                &format!("container={}", server.name),
                "--filter",
                "event=exec_create",
                "--format",
                "{{json .}}",
            ])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let execs = Execs { child, log };
        // Following once an exec made now shows up (bounded); `docker events` may
        // subscribe only after a first probe, so each try makes another.
        let deadline = Instant::now() + Duration::from_secs(60);
        for attempt in 0.. {
            let probe = format!("events-probe-{attempt}");
            let made = docker(&["exec", &server.name, "true", &probe]);
            assert!(made.status.success(), "{made:?}");
            let seen = Instant::now() + Duration::from_secs(3);
            while !execs.text().contains(&probe) && Instant::now() < seen {
                std::thread::sleep(Duration::from_millis(50));
            }
            if execs.text().contains(&probe) {
                break;
            }
            assert!(Instant::now() < deadline, "docker events shows nothing");
        }
        execs
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The relays started so far: exec creations whose command names the relay.
    fn relays(&self) -> usize {
        self.text()
            .lines()
            .filter(|l| l.contains(RELAY_NAME))
            .count()
    }

    /// Until `n` relays were seen (the Engine's events arrive a moment later), bounded.
    fn relays_settle_at(&self, n: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.relays() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A moment more, for any exec beyond the expected ones to show up too.
        std::thread::sleep(Duration::from_millis(500));
        self.relays()
    }
}

impl Drop for Execs {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Milliseconds, the median of `times`.
/// `n` calls of `version()` one after another, each of which must answer.
fn versions(rt: &tokio::runtime::Runtime, client: &foundry_activities::dns::Client, n: usize) {
    rt.block_on(async {
        for i in 0..n {
            if let Err(e) = client.version().await {
                panic!("call {i}: {}", e.message);
            }
        }
    })
}

fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1000.0
}

#[test]
fn many_requests_from_several_clients_travel_over_one_relay() {
    let server = Server::start("dns-relay");
    let (api, cx) = server.api();
    let execs = Execs::follow(&server);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    const CALLS: usize = 20;
    let times = rt.block_on(async {
        let mut times = Vec::new();
        for _ in 0..CALLS {
            // A client per call, as every activity makes its own.
            let client = api.client(&cx).expect("client");
            let started = Instant::now();
            let version = client.version().await.expect("version");
            times.push(started.elapsed());
            assert!(version.starts_with('4'), "{version}");
        }
        // Side by side, too: each gets its own answer.
        let (a, b) = (
            api.client(&cx).expect("client"),
            api.client(&cx).expect("client"),
        );
        let (zones, version) = tokio::join!(a.zones(), b.version());
        assert!(zones.expect("zones").is_empty());
        assert!(version.expect("version").starts_with('4'));
        times
    });
    eprintln!(
        "version() through the relay: median {:.1} ms over {CALLS} calls (first {:.1} ms)",
        median_ms(times.clone()),
        times[0].as_secs_f64() * 1000.0
    );
    assert_eq!(
        execs.relays_settle_at(1),
        1,
        "{} calls made other than one relay: {}",
        CALLS + 2,
        execs.text()
    );
    assert!(
        !execs.text().contains(&server.key),
        "the key is in an exec's command line"
    );
}

#[test]
fn a_restarted_server_answers_the_next_call_on_a_fresh_relay() {
    let server = Server::start("dns-relay-restart");
    let (api, cx) = server.api();
    let execs = Execs::follow(&server);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = api.client(&cx).expect("client");
    let calls = |n: usize| versions(&rt, &client, n);
    calls(3);
    let restart = docker(&["restart", "--time", "1", &server.name]);
    assert!(restart.status.success(), "{restart:?}");
    server.wait_for_api();
    // The first call after the restart finds its relay gone, and is sent again on a
    // fresh one: no error.
    calls(3);
    assert_eq!(
        execs.relays_settle_at(2),
        2,
        "one relay before the restart and one after: {}",
        execs.text()
    );
}

#[test]
fn a_server_that_stops_answering_is_a_request_with_no_answer_then_answers_again() {
    let server = Server::start("dns-relay-paused");
    let (api, cx) = server.api();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = api.client(&cx).expect("client");
    rt.block_on(client.version()).expect("version");
    let pause = docker(&["pause", &server.name]);
    assert!(pause.status.success(), "{pause:?}");
    let started = Instant::now();
    let err = rt
        .block_on(client.version())
        .expect_err("no answer from a paused server");
    let waited = started.elapsed();
    let unpause = docker(&["unpause", &server.name]);
    assert!(unpause.status.success(), "{unpause:?}");
    assert!(err.transient, "{err:?}");
    assert!(
        err.message.starts_with(&format!(
            "GET /api/v1/servers/localhost at the API of {}",
            server.name
        )) && err.message.ends_with(": no answer within 20 s"),
        "{}",
        err.message
    );
    assert!(waited >= Duration::from_secs(19), "{waited:?}");
    let version = rt.block_on(client.version()).expect("version once it runs");
    assert!(version.starts_with('4'), "{version}");
}

#[test]
fn ssh_lab_a_relay_whose_connection_dropped_is_replaced_over_a_new_one() {
    let lab = Lab::up("dns-relay", 1);
    let server = Server::start("dns-relay-ssh");
    let (mut api, cx) = server.api();
    let (host, target) = lab.engine_host();
    api.endpoint = lab.engine();
    let execs = Execs::follow(&server);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let client = api.client(&cx).expect("client");
    let calls = |n: usize| versions(&rt, &client, n);
    calls(3);
    // The host restarted: its sshd, and every connection to it, gone.
    let restart = docker(&["restart", "--time", "1", &lab.container(&host)]);
    assert!(restart.status.success(), "{restart:?}");
    wait_for("the host's sshd", Duration::from_secs(60), || {
        lab.ssh(&target, "true").status.success()
    });
    let started = Instant::now();
    calls(3);
    eprintln!(
        "three calls after the drop, the first on a fresh relay: {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        execs.relays_settle_at(2),
        2,
        "one relay before the drop and one after: {}",
        execs.text()
    );
}
