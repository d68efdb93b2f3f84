"""The benchmark's work on each host, with pyinfra's own operations.

Each host needs `foundry_name` (its name in the stack config) and `foundry_key` (the
public key Foundry logs in with) in its data; the benchmark writes both into the
inventory it generates. configure.sh and configure.yml do the same work.
"""

from io import StringIO

from pyinfra import host
from pyinfra.api import FactBase
from pyinfra.operations import apt, files, server

PACKAGES = ["sudo", "openssh-server", "python3", "procps", "iproute2"]
SUDOERS = "/etc/sudoers.d/foundry"
RULE = "foundry ALL=(ALL:ALL) NOPASSWD: ALL\n"
# sudo ignores names with a dot in /etc/sudoers.d: the candidate is inert.
CANDIDATE = "/etc/sudoers.d/.foundry.candidate"


class InstalledPackages(FactBase):
    """The given packages that dpkg-query reports installed."""

    def command(self, packages):
        wanted = " ".join(packages)
        return (
            "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' "
            f"{wanted} 2>/dev/null || true"
        )

    def process(self, output):
        return [line.split()[0] for line in output if line.split()[1:2] == ["ii"]]


name = host.data.foundry_name
key = host.data.foundry_key

server.user(
    name="User foundry",
    user="foundry",
    home="/home/foundry",
    shell="/bin/bash",
    groups=["sudo"],
    append=True,
    create_home=True,
    _sudo=True,
)

candidate = files.put(
    name="Sudoers rule (candidate)",
    src=StringIO(RULE),
    dest=CANDIDATE,
    user="root",
    group="root",
    mode="440",
    _sudo=True,
)
server.shell(
    name="Validate the sudoers rule",
    commands=[f"visudo -cf {CANDIDATE}"],
    _if=candidate.did_change,
    _sudo=True,
)
files.put(
    name="Sudoers rule",
    src=StringIO(RULE),
    dest=SUDOERS,
    user="root",
    group="root",
    mode="440",
    _sudo=True,
)

files.directory(
    name="SSH directory of foundry",
    path="/home/foundry/.ssh",
    user="foundry",
    group="foundry",
    mode="700",
    _sudo=True,
)
files.line(
    name="Foundry's key in authorized_keys",
    path="/home/foundry/.ssh/authorized_keys",
    line=key,
    escape_regex_characters=True,
    _sudo=True,
)
files.file(
    name="authorized_keys owner and mode",
    path="/home/foundry/.ssh/authorized_keys",
    user="foundry",
    group="foundry",
    mode="600",
    _sudo=True,
)

installed = host.get_fact(InstalledPackages, packages=PACKAGES)
missing = [p for p in PACKAGES if p not in installed]
if missing:
    apt.packages(
        name="Install the missing packages",
        packages=missing,
        no_recommends=True,
        _sudo=True,
        _env={"DEBIAN_FRONTEND": "noninteractive"},
    )

server.hostname(name="Host name", hostname=name, _sudo=True)
