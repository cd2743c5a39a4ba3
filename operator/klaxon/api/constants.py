"""Names every part of Klaxon agrees on: the API group and version, our kinds' plurals, the labels
and annotations we put on objects, and the defaults a rule gets when it names none."""

from __future__ import annotations

GROUP = "klaxon.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

ALERT_RULES = "alertrules"
ALERT_CONFIGS = "alertconfigs"
NOTIFICATION_CHANNELS = "notificationchannels"
#: Our kinds by name, with their plural (the resource in API paths and RBAC rules).
PLURALS: dict[str, str] = {
    "AlertRule": ALERT_RULES,
    "AlertConfig": ALERT_CONFIGS,
    "NotificationChannel": NOTIFICATION_CHANNELS,
}

#: On everything Klaxon creates.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "klaxon"}
#: The hash of the inputs an object was generated from: written only when it changes.
HASH_ANNOTATION = f"{GROUP}/input-hash"
#: Ownership an owner reference cannot express (another namespace, cluster scope): the owner's uid.
OWNER_UID_LABEL = f"{GROUP}/owner-uid"
#: A PrometheusRule's AlertRule (its name as a label value) and that rule's uid.
RULE_LABEL = f"{GROUP}/alertrule"
RULE_UID_LABEL = f"{GROUP}/alertrule-uid"
#: An evaluator's AlertConfig and shard; a grant's AlertConfig namespace.
CONFIG_LABEL = f"{GROUP}/alertconfig"
SHARD_LABEL = f"{GROUP}/shard"
CONFIG_NAMESPACE_LABEL = f"{GROUP}/alertconfig-namespace"
#: On an evaluator shard's Lease: where standbys forward events (the leader's ``POD_IP:port``).
LEADER_ADDRESS_ANNOTATION = f"{GROUP}/leader-address"

#: The AlertConfig a rule uses when ``spec.configRef`` names none (in the rule's namespace).
DEFAULT_CONFIG = "default"
#: The evaluation interval of a rule when neither it nor its AlertConfig sets one.
DEFAULT_INTERVAL = "1m"
