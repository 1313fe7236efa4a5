#!/usr/bin/env python3
"""Crate-internal import graph of src/ (non-test code): cycles and edges running up the layers.
Usage: check-layers.py [src] [--edges]; exit 1 on any cycle or violation."""
import os, re, sys
root = next((a for a in sys.argv[1:] if not a.startswith('-')), 'src')
RANK = {'error': -1, 'vocab': 0, 'progress': 0, 'ipclass': 0, 'targets': 0, 'trust': 0, 'pathguard': 0,
        'scheduler': 0, 'sniff': 0, 'asn': 0, 'lines': -1, 'servers': 1, 'observation': 1, 'record': 2, 'packet': 1.5, 'capture': 2.5, 'probe': 3, 'classify': 3,
        'report': 4, 'output': 5, 'scan': 6, 'workflows': 6, 'lab': 6, 'helper': 6, 'cli': 9}
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(dp, f); parts = os.path.relpath(p, root)[:-3].split('/')
            if parts[-1] in ('mod', 'lib', 'main'): parts = parts[:-1]
            mods['::'.join(parts)] = open(p).read()
def code(s):
    s = re.split(r'\n#\[cfg\(test\)\]\s*\n\s*mod tests', s)[0]
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', re.sub(r'//[^\n]*', '', s))
def flat(prefix, body):
    items, depth, cur = [], 0, ''
    for ch in body:
        depth += ch == '{'; depth -= ch == '}'
        if ch == ',' and depth == 0: items.append(cur); cur = ''
        else: cur += ch
    out = []
    for it in (i.strip() for i in items + [cur]):
        m = re.match(r'^([\w:]*?)::\{(.*)\}$', it, re.S)
        if m: out += flat(prefix + [x for x in m.group(1).split('::') if x], m.group(2))
        elif it: out.append(prefix + [x for x in it.split(' as ')[0].split('::') if x])
    return out
def target(path):
    best = None
    for i in range(1, len(path) + 1):
        if '::'.join(path[:i]) in mods: best = path[:i]
    return '::'.join(best[:2]) if best else None
edges = {}
for m, src in mods.items():
    s, me, paths = code(src), '::'.join(m.split('::')[:2]), []
    for u in re.finditer(r'use\s+crate::((?:\w+::)*)\{(.*?)\};', s, re.S):
        paths += flat([x for x in u.group(1).split('::') if x], u.group(2))
    paths += [u.group(1).split('::') for u in re.finditer(r'\bcrate::((?:\w+::)*\w+)', s)]
    paths += [m.split('::')[:-1] + u.group(1).split('::') for u in re.finditer(r'\bsuper::((?:\w+::)*\w+)', s)]
    for p in paths:
        t = target(p)
        if t and t not in (me, 'crate'): edges.setdefault(me, set()).add(t)
nodes = sorted({'::'.join(m.split('::')[:2]) for m in mods})
if '--edges' in sys.argv:
    for n in nodes: print(f"{n:24} -> {', '.join(sorted(edges.get(n, ())))}")
index, low, stack, on, sccs = {}, {}, [], set(), []
sys.setrecursionlimit(10000)
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in edges.get(v, ()):
        if w not in index: visit(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for n in nodes:
    if n not in index: visit(n)
rank = lambda m: RANK.get(m.split('::')[0])
bad = [f"{a} -> {b}" for a in nodes for b in sorted(edges.get(a, ()))
       if rank(a) is None or rank(b) is None
       or (a.split('::')[0] != b.split('::')[0] and rank(b) >= rank(a))]
print(f"cycles: {len(sccs)}"); [print('  {' + ', '.join(c) + '}') for c in sccs]
print(f"layer violations: {len(bad)}"); [print('  ' + b) for b in bad]
sys.exit(1 if sccs or bad else 0)
