"""The Hub's Pulumi program: load the typed stack config, build the stack, export its outputs."""

import sys

import pulumi

from hubinfra.config import ConfigError
from hubinfra.evaluation import tune_gc_for_evaluation
from hubinfra.stack import EXIT_ERROR_REPORTED, HubStack, read_stack_config

# One short evaluation per process: see hubinfra/evaluation.py (linear growth with the hub count).
tune_gc_for_evaluation()

try:
    config = read_stack_config()
    stack = HubStack("hub", config=config)
except ConfigError as error:
    # One line naming the key; a traceback would bury it. Exit code 32 tells the Python language host
    # that the error is already reported: any other code makes it add "program exited with non-zero
    # exit code", a second error line for the operator to read past.
    pulumi.log.error(str(error))
    sys.exit(EXIT_ERROR_REPORTED)

pulumi.export("hubVmId", stack.hub.vm_id)
pulumi.export("node", stack.hub.node)
# The cluster's Proxmox VE version; the program fails here if hub:proxmox.pveMajor does not match it.
pulumi.export("pveVersion", stack.pve_version)
pulumi.export("addresses", stack.hub.ipv4_addresses)
pulumi.export("pool", stack.grant.pool_id)
# The snippet the latest user data was uploaded as (`<datastore>:snippets/<vm>-user-data-<sha>.yaml`):
# the VM keeps pointing at the one it was created with until the roll-out step (operator guide).
pulumi.export("userDataFile", stack.hub.user_data_file_id)
pulumi.export("tokenId", stack.grant.token_id)
pulumi.export("token", stack.grant.token)
# The Hub API's first token (hub:apiTokenSeed): `pulumi stack output --show-secrets apiToken`.
if stack.api_token is not None:
    pulumi.export("apiToken", stack.api_token)
# The sentinel's token (hub:sentinel.enabled): its id and secret, both secret outputs, for a sentinel
# run on an operator's machine or a peer hub: `pulumi stack output --show-secrets sentinelToken`.
if stack.sentinel is not None:
    pulumi.export("sentinelTokenId", stack.sentinel.token_id)
    pulumi.export("sentinelToken", stack.sentinel.token)
pulumi.export(
    "network",
    {
        "zone": stack.network.zone_id,
        "management": stack.network.management_vnet,
        "tasks": stack.network.task_vnets,
        "isolated": {name: net.vnet for name, net in stack.network.isolated.items()},
    },
)
pulumi.export(
    "experiments",
    {name: {"vmId": exp.vm_id, "settings": exp.settings} for name, exp in stack.experiments.items()},
)
pulumi.export(
    "domainHubs",
    {
        name: {"vmId": hub.vm_id, "pool": hub.pool_id, "apiToken": hub.api_token}
        for name, hub in stack.domain_hubs.items()
    },
)
