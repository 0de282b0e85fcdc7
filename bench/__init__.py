"""Benchmark harness: real Debian software images, built and cached outside the repository.

`python -m bench` builds (once) images from Debian packages with debootstrap + apt-get in a chroot,
then measures slim on each against the read-once floor and dive, and prints one Markdown table
(issue 4). `python -m bench --measure-foundation` is the issue-2 measurement on a 200-400 MB image.
"""
