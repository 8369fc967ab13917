"""HubAccess: the Hub's least-privilege identity on Proxmox VE.

One role per scope that has privileges (pool, SDN vnet) built from `hubinfra.privileges`, and per hub
its OWN user, a pool and a privilege-separated API token whose rights are the intersection of that
user's ACLs and its own. Every ACL names a pool or an SDN vnet: nothing is granted on `/` or on a
node.

One user per hub, not one user with a token per hub: an ACL is keyed by (path, user or token, role),
so with a shared user two hubs that need the same ACL would both declare it, and removing one hub
(an experiment) would delete the other's (the production Hub's). With a user per hub every ACL has
exactly one owner, and a token leaked from an experiment's disk is never the production user's.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_proxmoxve as proxmoxve

from hubinfra.cloudinit import token_string
from hubinfra.privileges import Scope, privileges_for


class PoolGrant(pulumi.ComponentResource):
    """A pool for one hub, the datastore in it, and that hub's own token scoped to it."""

    pool_id: pulumi.Output[str]
    token_id: pulumi.Output[str]
    token: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        pool_id: str,
        comment: str,
        user_id: str,
        roles: dict[Scope, proxmoxve.RoleLegacy],
        datastore: str,
        vnet_paths: Sequence[str],
        protect: bool,
        user_aliases: Sequence[pulumi.Alias] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:access:PoolGrant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        user = proxmoxve.UserLegacy(
            f"{name}-user",
            user_id=user_id,
            comment=f"Hub runtime for pool {pool_id} (managed by Pulumi); acts only through its "
            "privilege-separated token",
            enabled=True,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(aliases=list(user_aliases))),
        )
        self.user = user
        pool = proxmoxve.PoolLegacy(f"{name}-pool", pool_id=pool_id, comment=comment, opts=child)
        # The datastore as a pool member: the pool ACL then covers Datastore.AllocateSpace/Audit
        # without an ACL on /storage.
        proxmoxve.pool.Membership(
            f"{name}-datastore",
            pool_id=pool.pool_id,
            storage_id=datastore,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[pool]),
        )
        token_name = pool_id.replace("_", "-")
        token = proxmoxve.user.Token(
            f"{name}-token",
            user_id=user.user_id,
            token_name=token_name,
            privileges_separation=True,
            comment=f"Hub runtime token for pool {pool_id} (managed by Pulumi)",
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]),
        )
        full_token_id = f"{user_id}!{token_name}"
        grants: list[tuple[str, Scope]] = [(f"/pool/{pool_id}", Scope.POOL)]
        grants += [(path, Scope.SDN_ZONE) for path in vnet_paths]
        for index, (path, scope) in enumerate(grants):
            role = roles[scope]
            depends: list[pulumi.Resource] = [pool] if scope is Scope.POOL else []
            opts_acl = pulumi.ResourceOptions(parent=self, depends_on=depends)
            # Privilege separation: the token gets its own ACL AND the user needs the same one.
            proxmoxve.Acl(
                f"{name}-user-acl-{index}",
                path=path,
                role_id=role.role_id,
                user_id=user.user_id,
                propagate=True,
                opts=opts_acl,
            )
            proxmoxve.Acl(
                f"{name}-token-acl-{index}",
                path=path,
                role_id=role.role_id,
                token_id=token.id.apply(lambda _: full_token_id),
                propagate=True,
                opts=opts_acl,
            )
        self.pool_id = pool.pool_id
        self.token_id = pulumi.Output.from_input(full_token_id)
        self.token = pulumi.Output.secret(
            token.value.apply(lambda v: token_string(user_id=user_id, token_name=token_name, value=v))
        )
        self.register_outputs({"pool_id": self.pool_id, "token_id": self.token_id, "token": self.token})


class HubAccess(pulumi.ComponentResource):
    """The roles; `grant()` adds a user, a pool and a token for each hub of the stack."""

    roles: dict[Scope, proxmoxve.RoleLegacy]

    def __init__(
        self,
        name: str,
        *,
        role_prefix: str,
        pve_major: int,
        datastore: str,
        protect: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:access:HubAccess", name, None, opts)
        self._datastore = datastore
        self._default_protect: bool = protect
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        self.roles = {
            scope: proxmoxve.RoleLegacy(
                f"{name}-role-{scope.value}",
                role_id=f"{role_prefix}-{scope.value}",
                privileges=privileges_for(scope, pve_major=pve_major),
                opts=child,
            )
            for scope in Scope
            # A scope without privileges (the node) gets no role and no ACL at all.
            if privileges_for(scope, pve_major=pve_major)
        }
        self.register_outputs({"roles": [r.role_id for r in self.roles.values()]})

    def grant(
        self,
        name: str,
        *,
        pool_id: str,
        comment: str,
        user_id: str,
        vnet_paths: Sequence[str],
        protect: bool | None = None,
        parent: pulumi.Resource | None = None,
        user_aliases: Sequence[pulumi.Alias] = (),
    ) -> PoolGrant:
        """A hub's own user (`user_id`), pool and token; see `hub_user_id` for the naming."""
        return PoolGrant(
            name,
            pool_id=pool_id,
            comment=comment,
            user_id=user_id,
            roles=self.roles,
            datastore=self._datastore,
            vnet_paths=vnet_paths,
            protect=protect if protect is not None else self._default_protect,
            user_aliases=user_aliases,
            opts=pulumi.ResourceOptions(parent=parent or self),
        )


def hub_user_id(base_user_id: str, suffix: str) -> str:
    """The Proxmox user of an experiment or domain hub: the stack's user with the hub's suffix.

    `hub-dev@pve` + `exp-faster` -> `hub-dev-exp-faster@pve`; the main Hub keeps `base_user_id`.
    """
    local, _, realm = base_user_id.partition("@")
    return f"{local}-{suffix}@{realm}"
