//! The CPU that takes a block device's completion interrupts, for the addon's sync thread
//! (native/polled-sync.cc, "Placement": the sync thread and its keeper run there).
//!
//! Owns: reading that from sysfs and procfs, read-only. The way there:
//!   file's st_dev → /sys/dev/block/MAJ:MIN → the disk (a partition's parent directory)
//!   → the disk's hardware queues: exactly one, else null (with a queue per CPU or group of
//!     CPUs, a completion comes back to the submitting CPU's own queue: nothing to pin)
//!   → the interrupts of the device above it that has any (msi_irqs/, else an irq file), looking
//!     no higher than the first PCI function (its bridges' vectors are not the disk's)
//!   → of those, the one that has fired most (/proc/interrupts), if it took at least 90% of them:
//!     the request queue, not a config vector; a controller with a vector per port and several
//!     busy disks, or none that fired: null
//!   → /proc/irq/N/effective_affinity_list (else smp_affinity_list): exactly one CPU, else null
//!   → null unless this process may run on that CPU and on at least one other
//!     (/proc/self/status Cpus_allowed_list).
//! Any file missing or unreadable gives null (not Linux, a container without /sys, a device
//! mapper or network file system): the sync thread then runs unpinned, as it did before.
import fs from 'node:fs';
import path from 'node:path';

/** Where sysfs and procfs are mounted (tests give fake trees). */
export interface KernelRoots {
  sys: string;
  proc: string;
}

const SYSTEM: KernelRoots = { sys: '/sys', proc: '/proc' };

/**
 * The completion CPU of the device holding the open file `fd`, or null. Read anew each time
 * (a store's open reads a dozen small files): irqbalance may move the interrupt meanwhile.
 */
export function completionCpuOfFile(fd: number): number | null {
  let dev: bigint;
  try {
    dev = fs.fstatSync(fd, { bigint: true }).dev;
  } catch {
    return null;
  }
  return completionCpu(dev, SYSTEM);
}

/** The completion CPU of block device `dev` (an st_dev, glibc's encoding), or null. */
export function completionCpu(dev: bigint, roots: KernelRoots): number | null {
  try {
    return find(dev, roots);
  } catch {
    return null;
  }
}

function find(dev: bigint, roots: KernelRoots): number | null {
  const { major, minor } = splitDev(dev);
  let disk = fs.realpathSync(path.join(roots.sys, 'dev', 'block', `${major}:${minor}`));
  if (fs.existsSync(path.join(disk, 'partition'))) disk = path.dirname(disk);
  if (fs.readdirSync(path.join(disk, 'mq')).length !== 1) return null;
  const irqs = deviceIrqs(fs.realpathSync(path.join(disk, 'device')), roots.sys);
  const irq = dominant(irqs, fs.readFileSync(path.join(roots.proc, 'interrupts'), 'latin1'));
  if (irq === null) return null;
  const irqDir = path.join(roots.proc, 'irq', String(irq));
  const affinityFile = fs.existsSync(path.join(irqDir, 'effective_affinity_list')) ? 'effective_affinity_list' : 'smp_affinity_list';
  const cpus = parseCpuList(fs.readFileSync(path.join(irqDir, affinityFile), 'latin1'));
  if (cpus.length !== 1) return null;
  const allowed = allowedCpus(fs.readFileSync(path.join(roots.proc, 'self', 'status'), 'latin1'));
  return allowed.length >= 2 && allowed.includes(cpus[0]) ? cpus[0] : null;
}

/** glibc's dev_t encoding: major in bits 8–19 and 32–43, minor in bits 0–7 and 20–31. */
export function splitDev(dev: bigint): { major: number; minor: number } {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & 0xfffff000n);
  const minor = (dev & 0xffn) | ((dev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * The interrupts of the first directory at or above `device` (inside `sysRoot`) that lists
 * any: MSI vectors (msi_irqs/), else a legacy line (irq). The walk ends at the first PCI
 * function: above it are bridges and root ports, whose vectors serve them, not the disk.
 */
function deviceIrqs(device: string, sysRoot: string): number[] {
  const top = fs.realpathSync(sysRoot);
  for (let dir = device; dir.startsWith(top + path.sep); dir = path.dirname(dir)) {
    const msi = path.join(dir, 'msi_irqs');
    if (fs.existsSync(msi)) return fs.readdirSync(msi).map(Number).filter(Number.isInteger);
    const line = path.join(dir, 'irq');
    if (fs.existsSync(line)) {
      const n = Number(fs.readFileSync(line, 'latin1').trim());
      return Number.isInteger(n) && n > 0 ? [n] : [];
    }
    if (isPciFunction(dir)) return [];
  }
  return [];
}

function isPciFunction(dir: string): boolean {
  try {
    return path.basename(fs.readlinkSync(path.join(dir, 'subsystem'))) === 'pci';
  } catch {
    return false;
  }
}

/** Interrupts per IRQ number in /proc/interrupts' text, summed over the CPUs. */
function interruptCounts(interrupts: string): Map<number, number> {
  const counts = new Map<number, number>();
  for (const line of interrupts.split('\n')) {
    const m = /^\s*(\d+):((?:\s+\d+)+)/.exec(line);
    if (m === null) continue;
    counts.set(Number(m[1]), m[2].trim().split(/\s+/).reduce((sum, c) => sum + Number(c), 0));
  }
  return counts;
}

/**
 * Of `irqs`, the one with the most interrupts in /proc/interrupts' text, if it took at least
 * 90% of all theirs; null if none fired or none dominates (a vector per port, several disks).
 */
export function dominant(irqs: readonly number[], interrupts: string): number | null {
  const counts = interruptCounts(interrupts);
  let best: number | null = null;
  let bestCount = 0;
  let total = 0;
  for (const irq of irqs) {
    const count = counts.get(irq) ?? 0;
    total += count;
    if (count > bestCount) {
      best = irq;
      bestCount = count;
    }
  }
  return bestCount > 0 && bestCount >= 0.9 * total ? best : null;
}

/** A kernel CPU list ("1", "0-3", "0,2-3", "" for none) as CPU numbers. */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (part === '') continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (m === null) throw new Error(`not a CPU list: ${JSON.stringify(text)}`);
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    for (let c = from; c <= to; c++) cpus.push(c);
  }
  return cpus;
}

/** The CPUs in a /proc status file's Cpus_allowed_list (a process's or a thread's). */
export function allowedCpus(status: string): number[] {
  const m = /^Cpus_allowed_list:\s*(.*)$/m.exec(status);
  return m === null ? [] : parseCpuList(m[1]);
}

/** The CPUs this process may run on, or null where /proc does not tell. */
export function allowedCpusOfProcess(): number[] | null {
  try {
    const cpus = allowedCpus(fs.readFileSync(path.join(SYSTEM.proc, 'self', 'status'), 'latin1'));
    return cpus.length > 0 ? cpus : null;
  } catch {
    return null;
  }
}
