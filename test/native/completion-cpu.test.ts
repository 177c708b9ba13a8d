// completionCpu (src/native/completion-cpu.ts): the CPU that takes a disk's completion
// interrupts, read from sysfs and procfs. Fake trees shaped like this machine's (a single-queue
// virtio disk on PCI, its request vector on CPU 1) and like the cases that must give null; then
// the real /sys and /proc, whose answer is only checked for its range.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { allowedCpusOfProcess, completionCpu, completionCpuOfFile, dominant, parseCpuList, splitDev, type KernelRoots } from '../../src/native/completion-cpu.js';

const top = fs.mkdtempSync(path.join(os.tmpdir(), 'solifuge-completion-cpu-'));
afterAll(() => fs.rmSync(top, { recursive: true, force: true }));

/** glibc's makedev. */
const makedev = (major: number, minor: number): bigint =>
  (BigInt(major & 0xfff) << 8n) | (BigInt(major & ~0xfff) << 32n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n);

interface Shape {
  queues?: number;
  /** irq → per-CPU counts; the first listed is the config vector, the second the requests'. */
  irqs?: Record<number, number[]>;
  /** Legacy interrupt line instead of MSI vectors. */
  legacyIrq?: number;
  /** The PCI function has no interrupt of its own; its root port has these MSI vectors. */
  onlyRootPortIrqs?: boolean;
  effective?: Record<number, string>;
  smp?: Record<number, string>;
  allowed?: string;
  partition?: boolean;
}

let trees = 0;
/** A fake /sys and /proc holding disk vda (254:0, partition vda1 254:1) on PCI 0000:00:02.0. */
function fakeTree(shape: Shape = {}): KernelRoots {
  const root = path.join(top, `t${trees++}`);
  const sys = path.join(root, 'sys');
  const proc = path.join(root, 'proc');
  const port = path.join(sys, 'devices', 'pci0000:00', '0000:00:1c.0');
  const pci = path.join(port, '0000:01:00.0');
  const virtio = path.join(pci, 'virtio1');
  const disk = path.join(virtio, 'block', 'vda');
  fs.mkdirSync(disk, { recursive: true });
  for (let q = 0; q < (shape.queues ?? 1); q++) fs.mkdirSync(path.join(disk, 'mq', String(q)), { recursive: true });
  fs.symlinkSync(path.relative(disk, virtio), path.join(disk, 'device'));
  fs.mkdirSync(path.join(sys, 'bus', 'pci'), { recursive: true });
  fs.mkdirSync(path.join(sys, 'bus', 'virtio'), { recursive: true });
  fs.symlinkSync(path.relative(pci, path.join(sys, 'bus', 'pci')), path.join(pci, 'subsystem'));
  fs.symlinkSync(path.relative(port, path.join(sys, 'bus', 'pci')), path.join(port, 'subsystem'));
  fs.symlinkSync(path.relative(virtio, path.join(sys, 'bus', 'virtio')), path.join(virtio, 'subsystem'));
  fs.mkdirSync(path.join(disk, 'vda1'));
  fs.writeFileSync(path.join(disk, 'vda1', 'partition'), '1\n');
  fs.mkdirSync(path.join(sys, 'dev', 'block'), { recursive: true });
  fs.symlinkSync(path.relative(path.join(sys, 'dev', 'block'), disk), path.join(sys, 'dev', 'block', '254:0'));
  fs.symlinkSync(path.relative(path.join(sys, 'dev', 'block'), path.join(disk, 'vda1')), path.join(sys, 'dev', 'block', '254:1'));
  const irqs = shape.irqs ?? { 35: [0, 1], 36: [0, 512055] };
  if (shape.legacyIrq !== undefined) fs.writeFileSync(path.join(pci, 'irq'), `${shape.legacyIrq}\n`);
  else {
    const holder = shape.onlyRootPortIrqs === true ? port : pci;
    fs.mkdirSync(path.join(holder, 'msi_irqs'));
    for (const irq of Object.keys(irqs)) fs.writeFileSync(path.join(holder, 'msi_irqs', irq), 'msix\n');
  }
  const lines = ['           CPU0       CPU1       ', '  1:          9          0   IO-APIC   1-edge      i8042'];
  for (const [irq, counts] of Object.entries(irqs)) {
    lines.push(`${irq.padStart(3)}: ${counts.map((c) => String(c).padStart(10)).join(' ')} PCI-MSIX-0000:00:02.0   0-edge      virtio1-x`);
  }
  lines.push('NMI:          0          0   Non-maskable interrupts');
  fs.mkdirSync(proc, { recursive: true });
  fs.writeFileSync(path.join(proc, 'interrupts'), `${lines.join('\n')}\n`);
  for (const irq of [...Object.keys(irqs), '1']) {
    const dir = path.join(proc, 'irq', irq);
    fs.mkdirSync(dir, { recursive: true });
    const eff = shape.effective === undefined ? (irq === '36' ? '1' : '0') : shape.effective[Number(irq)];
    if (eff !== undefined) fs.writeFileSync(path.join(dir, 'effective_affinity_list'), `${eff}\n`);
    fs.writeFileSync(path.join(dir, 'smp_affinity_list'), `${shape.smp?.[Number(irq)] ?? '0-1'}\n`);
  }
  fs.mkdirSync(path.join(proc, 'self'));
  fs.writeFileSync(path.join(proc, 'self', 'status'), `Name:\tnode\nCpus_allowed:\t3\nCpus_allowed_list:\t${shape.allowed ?? '0-1'}\nMems_allowed:\t1\n`);
  return { sys, proc };
}

describe('completionCpu', () => {
  const vda = makedev(254, 0);
  const vda1 = makedev(254, 1);

  it("finds the request vector's CPU of a single-queue disk, also through a partition", () => {
    const roots = fakeTree();
    expect(completionCpu(vda, roots)).toBe(1);
    expect(completionCpu(vda1, roots)).toBe(1);
  });

  it('takes the vector that fired most, wherever it is listed', () => {
    expect(completionCpu(vda, fakeTree({ irqs: { 35: [7000, 0], 36: [0, 12] }, effective: { 35: '0', 36: '1' } }))).toBe(0);
    expect(completionCpu(vda, fakeTree({ irqs: { 40: [3, 900], 41: [0, 2] }, effective: { 40: '1', 41: '0' } }))).toBe(1);
  });

  it('reads smp_affinity_list where there is no effective affinity', () => {
    expect(completionCpu(vda, fakeTree({ effective: {}, smp: { 35: '0', 36: '1' } }))).toBe(1);
    expect(completionCpu(vda, fakeTree({ effective: {}, smp: { 35: '0', 36: '0-1' } }))).toBeNull();
  });

  it('follows a legacy interrupt line', () => {
    expect(completionCpu(vda, fakeTree({ legacyIrq: 11, irqs: { 11: [5, 80] }, effective: { 11: '1' } }))).toBe(1);
  });

  it('gives null where pinning has nothing to offer or cannot be done', () => {
    expect(completionCpu(vda, fakeTree({ queues: 2 }))).toBeNull(); // completions come back to each CPU's queue
    expect(completionCpu(vda, fakeTree({ effective: { 35: '0', 36: '0-1' } }))).toBeNull(); // spread
    expect(completionCpu(vda, fakeTree({ irqs: { 35: [0, 0], 36: [0, 0] } }))).toBeNull(); // never fired
    expect(completionCpu(vda, fakeTree({ onlyRootPortIrqs: true }))).toBeNull(); // a bridge's vectors are not the disk's
    // A vector per port, several busy disks: which is ours cannot be told.
    expect(completionCpu(vda, fakeTree({ irqs: { 40: [0, 600], 41: [500, 0] }, effective: { 40: '1', 41: '0' } }))).toBeNull();
    expect(completionCpu(vda, fakeTree({ allowed: '0,2-3' }))).toBeNull(); // not ours to run on
    expect(completionCpu(vda, fakeTree({ allowed: '1' }))).toBeNull(); // our only CPU: nothing to gain
    expect(completionCpu(makedev(8, 0), fakeTree())).toBeNull(); // no such device
    expect(completionCpu(vda, { sys: path.join(top, 'none'), proc: path.join(top, 'none') })).toBeNull();
  });

  it('gives null, not an error, when a file is malformed', () => {
    const roots = fakeTree({ effective: { 35: '0', 36: 'one' } });
    expect(completionCpu(vda, roots)).toBeNull();
  });
});

describe('its parts', () => {
  it('splits device numbers as glibc encodes them, also past 12-bit majors and 8-bit minors', () => {
    for (const [major, minor] of [[254, 0], [8, 17], [259, 1_048_575], [4095, 255], [4096, 256], [65_535, 9]]) {
      expect(splitDev(makedev(major, minor))).toEqual({ major, minor });
    }
  });

  it('parses CPU lists', () => {
    expect(parseCpuList('1\n')).toEqual([1]);
    expect(parseCpuList('0-3,5,7-8')).toEqual([0, 1, 2, 3, 5, 7, 8]);
    expect(parseCpuList('')).toEqual([]);
    expect(() => parseCpuList('x')).toThrow();
  });

  it('picks the interrupt that took at least 90% of the given ones', () => {
    const text = ' 35:  1  2  PCI x\n 36: 10 20  PCI y\n 37: 99 99  PCI z\n 38: 0 0  PCI w\nLOC: 5 5 Local timer\n';
    expect(dominant([35, 36], text)).toBe(36); // 30 of 33
    expect(dominant([35], text)).toBe(35);
    expect(dominant([36, 37], text)).toBeNull(); // 198 of 228
    expect(dominant([38], text)).toBeNull();
    expect(dominant([50], text)).toBeNull();
  });
});

describe('on this machine', () => {
  it('answers a CPU this process may use, or null', () => {
    const file = path.join(top, 'real');
    fs.writeFileSync(file, 'x');
    const fd = fs.openSync(file, 'r');
    try {
      const cpu = completionCpuOfFile(fd);
      if (cpu !== null) expect(allowedCpusOfProcess()).toContain(cpu);
    } finally {
      fs.closeSync(fd);
    }
    expect(completionCpuOfFile(-1)).toBeNull();
  });
});
