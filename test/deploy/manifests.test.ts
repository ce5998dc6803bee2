// The Kubernetes manifests (issue 19, point 3): both overlays render with kubectl's kustomize, and
// the objects are what an operator needs: the kinds, probes on the registry's health endpoints, a
// grace period above the drain, the restricted Pod Security Standard, resources, a NetworkPolicy
// letting in only the registry port, and environment variables that are all settings the
// registry knows (a typo would be ignored silently by the registry, so it is caught here).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { SETTINGS } from '../../src/config.js';
import { URL_SETTINGS } from '../../src/secrets.js';

const execFileP = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const KUSTOMIZE_DIR = path.join(ROOT, 'deploy/kubernetes');

type Obj = any;

export async function render(dir: string): Promise<Obj[]> {
  const { stdout } = await execFileP('kubectl', ['kustomize', dir], { maxBuffer: 16 * 1024 * 1024 });
  return parseAllDocuments(stdout).map((d) => d.toJS());
}

/** Variables read outside the settings table: storage backends' and Nix's own. */
const OTHER_KNOWN = new Set<string>([
  ...URL_SETTINGS,
  'NIX_CONFIG',
  'S3_BUCKET', 'S3_REGION', 'S3_FORCE_PATH_STYLE', 'S3_PREFIX', 'AWS_REGION', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY',
  'GCS_BUCKET', 'GCS_PREFIX', 'GOOGLE_APPLICATION_CREDENTIALS',
]);
const KNOWN = new Set<string>([...Object.values(SETTINGS).map((s) => s.env), ...OTHER_KNOWN]);

function byKind(objs: Obj[], kind: string): Obj[] {
  return objs.filter((o) => o.kind === kind);
}

function checkCommon(objs: Obj[]) {
  const [deployment] = byKind(objs, 'Deployment');
  assert.ok(deployment, 'a Deployment');
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  assert.equal(pod.containers.length, 1);

  // Probes: the registry's own endpoints, on its port.
  assert.equal(container.readinessProbe.httpGet.path, '/readyz');
  assert.equal(container.livenessProbe.httpGet.path, '/healthz');
  assert.ok(container.startupProbe?.httpGet, 'a startup probe');
  const ports = new Set([8080, 'http']);
  for (const p of ['readinessProbe', 'livenessProbe', 'startupProbe']) assert.ok(ports.has(container[p].httpGet.port), p);
  assert.equal(container.ports[0].containerPort, 8080);
  const pause = container.lifecycle?.preStop?.sleep?.seconds;
  assert.ok(pause > 0, 'a preStop pause');

  // The grace period covers the pause and the drain.
  const configMap = byKind(objs, 'ConfigMap').find((c) => container.envFrom.some((e: Obj) => e.configMapRef?.name === c.metadata.name));
  assert.ok(configMap, 'the container reads the ConfigMap');
  const shutdown = Number(configMap.data.NIXERY_SHUTDOWN_TIMEOUT ?? SETTINGS.shutdownTimeout.default);
  assert.ok(pod.terminationGracePeriodSeconds > shutdown + pause, `grace ${pod.terminationGracePeriodSeconds} s > ${shutdown} s drain + ${pause} s pause`);

  // Pod Security Standard "restricted".
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  const sc = container.securityContext;
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.deepEqual(sc.capabilities.drop, ['ALL']);
  assert.equal(sc.capabilities.add, undefined);
  assert.equal(sc.privileged ?? false, false);
  assert.equal(pod.automountServiceAccountToken, false);
  for (const field of ['hostNetwork', 'hostPID', 'hostIPC']) assert.equal(pod[field] ?? false, false, field);
  // What the registry writes is on volumes: Nix's store and state, /tmp, storage.
  const mounts = new Set(container.volumeMounts.map((m: Obj) => m.mountPath));
  for (const dir of ['/nix', '/tmp']) assert.ok(mounts.has(dir), `${dir} is a volume`);
  const storagePath = container.env.find((e: Obj) => e.name === 'STORAGE_PATH')?.value;
  assert.ok([...mounts].some((m) => storagePath === m || storagePath?.startsWith(`${m}/`)), 'the storage path is on a volume');
  for (const v of pod.volumes) assert.equal(v.hostPath, undefined, 'no hostPath volume (restricted)');

  // Resources: requests and a memory limit.
  assert.ok(container.resources.requests.cpu && container.resources.requests.memory);
  assert.ok(container.resources.limits.memory);

  // Every variable is a setting the registry knows.
  const names = [...Object.keys(configMap.data), ...container.env.map((e: Obj) => e.name)];
  const unknown = names.filter((n) => !KNOWN.has(n));
  assert.deepEqual(unknown, [], `unknown settings: ${unknown.join(', ')}`);

  // Networking: a Service to the port, a NetworkPolicy letting in only it.
  const [service] = byKind(objs, 'Service');
  assert.equal(service.spec.ports[0].port, 8080);
  assert.deepEqual(service.spec.selector, deployment.spec.selector.matchLabels);
  const [policy] = byKind(objs, 'NetworkPolicy');
  assert.deepEqual(policy.spec.policyTypes, ['Ingress']);
  assert.deepEqual(policy.spec.podSelector.matchLabels, deployment.spec.selector.matchLabels);
  assert.deepEqual(policy.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port)), [8080]);
  // Prometheus' scrape annotations.
  const annotations = deployment.spec.template.metadata.annotations;
  assert.equal(annotations['prometheus.io/scrape'], 'true');
  assert.equal(annotations['prometheus.io/path'], '/metrics');
  return { deployment, pod, container, configMap };
}

test('overlay single: one replica, filesystem storage on a PVC, Recreate, credentials from a Secret', async () => {
  const objs = await render(path.join(KUSTOMIZE_DIR, 'overlays/single'));
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'NetworkPolicy', 'PersistentVolumeClaim', 'Secret', 'Service', 'ServiceAccount']);
  const { deployment, pod, container, configMap } = checkCommon(objs);
  // The Secret (empty until the operator fills secrets.env) reaches the registry's environment.
  const [secret] = byKind(objs, 'Secret');
  assert.deepEqual(secret.data ?? {}, {});
  assert.ok(container.envFrom.some((e: Obj) => e.secretRef?.name === secret.metadata.name));
  assert.equal(deployment.spec.replicas, 1);
  assert.equal(deployment.spec.strategy.type, 'Recreate');
  assert.equal(configMap.data.NIXERY_STORAGE_BACKEND, 'filesystem');
  const [pvc] = byKind(objs, 'PersistentVolumeClaim');
  const storage = pod.volumes.find((v: Obj) => v.name === 'storage');
  assert.equal(storage.persistentVolumeClaim.claimName, pvc.metadata.name);
});

test('overlay replicated: three replicas on S3 from a Secret, a PodDisruptionBudget and an autoscaler', async () => {
  const objs = await render(path.join(KUSTOMIZE_DIR, 'overlays/replicated'));
  assert.deepEqual(objs.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'Service', 'ServiceAccount']);
  const { deployment, container, configMap } = checkCommon(objs);
  assert.equal(deployment.spec.replicas, 3);
  assert.equal(configMap.data.NIXERY_STORAGE_BACKEND, 's3');
  assert.ok(container.envFrom.some((e: Obj) => e.secretRef?.name), 'S3 settings and credentials from a Secret');
  const [pdb] = byKind(objs, 'PodDisruptionBudget');
  assert.deepEqual(pdb.spec.selector.matchLabels, deployment.spec.selector.matchLabels);
  assert.ok(pdb.spec.minAvailable < deployment.spec.replicas);
  const [hpa] = byKind(objs, 'HorizontalPodAutoscaler');
  assert.equal(hpa.spec.scaleTargetRef.name, deployment.metadata.name);
  assert.ok(hpa.spec.minReplicas >= 3);
  // A replica's volumes are not shared storage: nothing but caches on them.
  assert.ok(!byKind(objs, 'PersistentVolumeClaim').length);
});

test('component servicemonitor: a ServiceMonitor scraping /metrics of the Service', async () => {
  // An overlay of the operator's own that adds the component to `single`.
  const dir = await mkdtemp(path.join(tmpdir(), 'nixery-kustomize-'));
  try {
    await cp(KUSTOMIZE_DIR, path.join(dir, 'kubernetes'), { recursive: true });
    const overlay = path.join(dir, 'kubernetes/overlays/monitored');
    await mkdir(overlay);
    await writeFile(path.join(overlay, 'kustomization.yaml'), 'resources: ["../single"]\ncomponents: ["../../components/servicemonitor"]\n');
    const objs = await render(overlay);
    const [monitor] = byKind(objs, 'ServiceMonitor');
    const [service] = byKind(objs, 'Service');
    assert.deepEqual(monitor.spec.selector.matchLabels, Object.fromEntries(Object.entries(service.metadata.labels).filter(([k]) => k in monitor.spec.selector.matchLabels)));
    assert.equal(monitor.spec.endpoints[0].port, service.spec.ports[0].name);
    assert.equal(monitor.spec.endpoints[0].path, '/metrics');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
