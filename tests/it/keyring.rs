//! Foundry's own OpenBAO token in the OS keyring: a real Secret Service (GNOME Keyring on
//! a private D-Bus session bus, `foundry_tests::keyring`) and a real OpenBAO install
//! (`crate::openbao`). With the keyring the token is there and in no byte of the home;
//! without a session bus it falls back to the 0600 file with one warning
//! (`FOUNDRY_KEYRING=off`: no warning; `required`: an error); a token file from before
//! moves into the keyring once one answers.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use foundry_core::SecretValue;
use foundry_tests::keyring::SecretService;
use foundry_workflows::openbao::token_store::{KEYRING_SERVICE, KeyringTokenStore};

use foundry_tests::leak::{contains, files_under};

use crate::openbao::{Install, Net, run_foundry};

const FALLBACK_WARNING: &str = "no OS keyring is running";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn times(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// Foundry's token of this install's home, as the keyring's own client reads it.
fn keyring_token(keyring: &SecretService, install: &Install) -> Option<String> {
    let user = KeyringTokenStore::in_home(&install.home.path())
        .user()
        .to_string();
    keyring.lookup(KEYRING_SERVICE, &user)
}

/// The token is valid in OpenBAO, with Foundry's policy.
fn assert_valid(install: &Install, token: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let policies = rt
        .block_on(async { install.client().lookup_self(&SecretValue::new(token)).await })
        .expect("lookup")
        .expect("the token is valid");
    assert!(policies.contains(&"foundry".to_string()), "{policies:?}");
}

/// `secret set` then `secret get --yes` of one key, with `env`; the value read back.
fn set_then_get(install: &Install, path: &str, env: &[(&str, &str)]) -> (Output, Output) {
    let value = format!("v-{}", rand::random::<u64>());
    let set = run_foundry(
        &install.home,
        &["secret", "set", path, "--stdin"],
        Some(&value),
        env,
    );
    assert!(set.status.success(), "secret set: {}", text(&set));
    let get = run_foundry(&install.home, &["secret", "get", path, "--yes"], None, env);
    assert!(get.status.success(), "secret get: {}", text(&get));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), value);
    (set, get)
}

#[test]
fn with_a_keyring_the_token_lives_there_and_in_no_byte_of_the_home() {
    let keyring = SecretService::start();
    let net = Net::new();
    let install = Install::new(&net, 20);
    let bus = [("DBUS_SESSION_BUS_ADDRESS", keyring.address())];

    let (first, printed) = install.install_with(&bus);
    install.stack_config("");
    assert_eq!(first["token_created"], true, "{first}");
    let printed = String::from_utf8_lossy(&printed).into_owned();
    assert!(!printed.contains(FALLBACK_WARNING), "{printed}");
    assert!(
        !install.token_file.exists(),
        "a token file beside the keyring"
    );
    let token = keyring_token(&keyring, &install).expect("Foundry's token in the keyring");
    assert_valid(&install, &token);
    assert!(
        !contains(printed.as_bytes(), &token),
        "the install printed the token"
    );

    // Read back from the keyring: a second install makes no new token, and `foundry secret`
    // works with it.
    let (again, _) = install.install_with(&bus);
    assert_eq!(again["token_created"], false, "{again}");
    assert_eq!(
        keyring_token(&keyring, &install).as_deref(),
        Some(token.as_str())
    );
    let (set, get) = set_then_get(&install, "it/keyring:answer", &bus);
    for out in [&set, &get] {
        assert!(!text(out).contains(FALLBACK_WARNING), "{}", text(out));
    }

    for (path, bytes) in files_under(&install.home.path(), &[]) {
        assert!(
            !contains(&bytes, &token),
            "{} holds the token",
            path.display()
        );
    }

    // Without the bus, the same home's commands fall back to the (empty) file: said, not
    // guessed; and `required` refuses.
    let lost = run_foundry(
        &install.home,
        &["secret", "get", "it/keyring:answer", "--yes"],
        None,
        &[],
    );
    assert_eq!(lost.status.code(), Some(1), "{}", text(&lost));
    let said = text(&lost);
    assert_eq!(times(&said, FALLBACK_WARNING), 1, "{said}");
    assert!(said.contains("Foundry holds no OpenBAO token"), "{said}");
    let required = run_foundry(
        &install.home,
        &["secret", "get", "it/keyring:answer", "--yes"],
        None,
        &[("FOUNDRY_KEYRING", "required")],
    );
    assert_eq!(required.status.code(), Some(1), "{}", text(&required));
    let said = text(&required);
    assert!(
        said.contains("FOUNDRY_KEYRING=required, but no OS keyring answers (no D-Bus session bus")
            && said.contains("hint: start a Secret Service"),
        "{said}"
    );
}

#[test]
fn without_a_keyring_the_token_file_serves_until_one_answers_and_then_moves_into_it() {
    let net = Net::new();
    let install = Install::new(&net, 20);

    // No session bus: the 0600 file, with one warning naming it.
    let (first, printed) = install.install();
    install.stack_config("");
    assert_eq!(first["token_created"], true, "{first}");
    let printed = String::from_utf8_lossy(&printed).into_owned();
    assert_eq!(times(&printed, FALLBACK_WARNING), 1, "{printed}");
    assert!(
        printed.contains(&format!(
            "Foundry's OpenBAO token is kept in {} (mode 0600)",
            install.token_file.display()
        )),
        "{printed}"
    );
    let mode = std::fs::metadata(&install.token_file)
        .expect("the token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&install.token_file).expect("token");
    let token = token.trim().to_string();
    assert!(
        !contains(printed.as_bytes(), &token),
        "the install printed the token"
    );

    // `off`: the same file, without a word about a keyring.
    let (off, printed) = install.install_with(&[("FOUNDRY_KEYRING", "off")]);
    assert_eq!(off["token_created"], false, "{off}");
    let printed = String::from_utf8_lossy(&printed).into_owned();
    assert!(!printed.to_lowercase().contains("keyring"), "{printed}");
    set_then_get(&install, "it/file:answer", &[("FOUNDRY_KEYRING", "off")]);

    // `required`: a clear error and a non-zero exit.
    let input = install.input.to_str().expect("utf8");
    let required = install
        .home
        .cmd(&["openbao", "install", "--input", input])
        .env("FOUNDRY_KEYRING", "required")
        .output()
        .expect("install");
    assert!(!required.status.success(), "{}", text(&required));
    let said = text(&required);
    assert!(
        said.contains(
            "failed: FOUNDRY_KEYRING=required, but no OS keyring answers (no D-Bus session bus"
        ) && said.contains("\nhint: start a Secret Service"),
        "{said}"
    );
    assert!(install.token_file.exists());

    // A keyring now answers: the first command moves the file's token into it, says so
    // once, and deletes the file; the install then finds its token there.
    let keyring = SecretService::start();
    let bus = [("DBUS_SESSION_BUS_ADDRESS", keyring.address())];
    let (set, get) = set_then_get(&install, "it/moved:answer", &bus);
    let moved = format!(
        "Foundry's OpenBAO token moved from {} into the OS keyring",
        install.token_file.display()
    );
    assert_eq!(times(&text(&set), &moved), 1, "{}", text(&set));
    assert_eq!(times(&text(&get), &moved), 0, "{}", text(&get));
    for out in [&set, &get] {
        assert!(!text(out).contains(FALLBACK_WARNING), "{}", text(out));
        assert!(!contains(&out.stderr, &token), "the token was printed");
    }
    assert!(!install.token_file.exists(), "the token file remains");
    assert_eq!(
        keyring_token(&keyring, &install).as_deref(),
        Some(token.as_str())
    );
    let (again, printed) = install.install_with(&bus);
    assert_eq!(again["token_created"], false, "{again}");
    assert!(!contains(&printed, &token));
    assert!(!install.token_file.exists());
}
