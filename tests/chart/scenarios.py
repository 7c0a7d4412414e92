"""Value sets the chart must render: every certificate mode, every credential option, the
optional objects. The unit tests check invariants on each; the e2e test dry-runs each against
a real API server.
"""

from __future__ import annotations

import base64
from typing import Any

CA_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nnot-a-real-ca\n-----END CERTIFICATE-----\n").decode()

# Every certificate mode and every credential option, plus the optional objects. Each one must
# render, and tests/unit/test_chart.py runs its invariant tests on each of them.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "certs-certManager-own-ca": {"certificates": {"mode": "certManager"}},
    "certs-certManager-issuerRef": {
        "certificates": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}},
        }
    },
    "certs-secret": {"certificates": {"mode": "secret", "secret": {"name": "corp-tls", "caBundle": CA_B64}}},
    "creds-huawei-secret": {"credentials": {"huawei": {"existingSecret": "hw-creds"}}},
    "creds-huawei-secret-all-keys": {
        "credentials": {
            "huawei": {"existingSecret": "hw-creds", "secretKeys": {"securityToken": "token", "projectId": "project"}}
        }
    },
    "creds-aliyun-secret": {
        "credentials": {"aliyun": {"existingSecret": "ali-creds", "secretKeys": {"securityToken": "sts"}}}
    },
    "creds-aliyun-rrsa": {"credentials": {"aliyun": {"rrsa": {"roleName": "image-gate-reader"}}}},
    "creds-serviceaccount-annotations": {
        "serviceAccount": {"annotations": {"example.com/workload-identity": "image-gate"}}
    },
    "webhook-url-dev": {"webhook": {"url": "https://127.0.0.1:9443", "caBundle": CA_B64}},
    "monitoring-and-networkpolicy": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "networkPolicy": {"enabled": True},
    },
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 10}},
    "spread-priority-hard-affinity": {
        "podAntiAffinity": "hard",
        "priorityClassName": "system-cluster-critical",
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
    },
}
