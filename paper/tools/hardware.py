#!/usr/bin/env python3
"""Prints the machine the benchmarks ran on, as JSON: CPU model, cores, memory, kernel,
operating system, Rust compiler and the repository's commit.

Usage: hardware.py COMMIT
"""
import json
import os
import platform
import subprocess
import sys


def first(path, key):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def command(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def os_name():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "unknown").strip('"')
    except OSError:
        return "unknown"


mem_kib = first("/proc/meminfo", "MemTotal").split()[0]
json.dump({
    "cpu_model": first("/proc/cpuinfo", "model name"),
    "cores": os.cpu_count(),
    "memory_gib": round(int(mem_kib) / 1024 / 1024, 1) if mem_kib.isdigit() else None,
    "kernel": platform.release(),
    "os": os_name(),
    "rustc": command("rustc", "--version"),
    "git_commit": sys.argv[1],
}, sys.stdout, indent=1)
print()
