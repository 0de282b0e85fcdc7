"""PerlAnalyzer: @INC from a Debian-style image, use/require/use lib, XS .so, POD and heredocs."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers.perl import PerlAnalyzer, perl_env, perl_roots, scan_perl
from slim.model import Unknown
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

T = "x86_64-linux-gnu"
SCRIPT = """#!/usr/bin/perl
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::XS qw(decode_json);
use parent -norequire, 'Ignored::Parent';
use base qw(My::Base);
require "helpers.pl";
require My::Lazy;
my $name = "Dyn::Mod";
require $name;
my $text = <<"EOT";
use Not::From::Heredoc;
EOT
# use Not::From::Comment;
sub f { use Missing::Module; }

=pod

use Not::From::Pod;

=cut

print "done\\n";
__END__
use Not::After::End;
"""

FILES: dict[str, str | bytes] = {
    "/usr/bin/perl": ELF,
    f"/usr/lib/{T}/perl/5.36/Config.pm": "",
    f"/usr/lib/{T}/perl/5.36.0/.keep": "",
    f"/usr/lib/{T}/perl-base/strict.pm": "",
    f"/usr/lib/{T}/perl-base/warnings.pm": "",
    f"/usr/lib/{T}/perl-base/parent.pm": "",
    f"/usr/lib/{T}/perl-base/base.pm": "",
    f"/usr/lib/{T}/perl-base/lib.pm": "",
    f"/usr/lib/{T}/perl-base/unused.pm": "",
    "/usr/share/perl/5.36/FindBin.pm": "use Carp;\n",
    "/usr/share/perl/5.36/Carp.pm": "",
    f"/usr/lib/{T}/perl5/5.36/JSON/XS.pm": "use XSLoader;\nXSLoader::load;\n",
    f"/usr/lib/{T}/perl5/5.36/auto/JSON/XS/XS.so": ELF,
    f"/usr/lib/{T}/perl-base/XSLoader.pm": "",
    "/usr/share/perl5/My/Base.pm": "1;\n",
    "/opt/app/app.pl": SCRIPT,
    "/opt/app/lib/My/Lazy.pm": "1;\n",
    "/opt/app/helpers.pl": "1;\n",
    "/opt/extra/Env/Only.pm": "1;\n",
}
CONFIG = {"WorkingDir": "/opt/app", "Entrypoint": ["perl", "-MEnv::Only", "app.pl"],
          "Env": ["PATH=/usr/bin:/bin", "PERL5LIB=/opt/extra"]}


def test_scan_skips_pod_heredoc_comments() -> None:
    mods = {r.text for r in scan_perl(SCRIPT) if r.kind == "module"}
    assert {"strict", "warnings", "JSON::XS", "My::Base", "My::Lazy", "Missing::Module"} <= mods
    for bogus in ("Not::From::Heredoc", "Not::From::Comment", "Not::From::Pod", "Not::After::End",
                  "Ignored::Parent"):
        assert bogus not in mods
    assert [r.text for r in scan_perl(SCRIPT) if r.kind == "file"] == ["helpers.pl"]
    assert any(r.kind == "dynamic" for r in scan_perl(SCRIPT))


def test_inc_from_image(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        env = perl_env(ctx)
    assert env.version == "5.36.0"
    assert env.inc[0] == "/opt/extra"
    assert env.inc[1:] == (f"/usr/lib/{T}/perl5/5.36", "/usr/share/perl5", f"/usr/lib/{T}/perl-base",
                           f"/usr/lib/{T}/perl/5.36", "/usr/share/perl/5.36")


def test_perl_closure_with_xs(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        keep, _, unknowns = closure(ctx, perl_roots(ctx, list(ctx.config.argv)), [PerlAnalyzer])
    expected = {
        "/opt/app/app.pl", "/opt/app/lib/My/Lazy.pm", "/opt/app/helpers.pl", "/opt/extra/Env/Only.pm",
        f"/usr/lib/{T}/perl-base/strict.pm", f"/usr/lib/{T}/perl5/5.36/JSON/XS.pm",
        f"/usr/lib/{T}/perl5/5.36/auto/JSON/XS/XS.so", f"/usr/lib/{T}/perl-base/XSLoader.pm",
        "/usr/share/perl/5.36/FindBin.pm", "/usr/share/perl/5.36/Carp.pm", "/usr/share/perl5/My/Base.pm",
    }
    assert expected <= keep, sorted(expected - keep)
    assert f"/usr/lib/{T}/perl-base/unused.pm" not in keep
    reasons = [u.reason for u in unknowns if isinstance(u, Unknown)]
    assert any("Missing::Module" in r and "line 17" in r for r in reasons)
    assert any("require $name" in r for r in reasons)


def test_clustered_e_switch_is_code_not_a_script(tmp_path: Path) -> None:
    """`perl -le 'use strict; print 1'` (PostgreSQL's scripts): the code's modules, no script."""
    write_tree(tmp_path, FILES, config=CONFIG)
    with context(tmp_path) as ctx:
        roots = perl_roots(ctx, ["/usr/bin/perl", "-le", "use strict; print 1"])
    assert f"/usr/lib/{T}/perl-base/strict.pm" in {getattr(r, "dst", "") for r in roots}
    assert not [r for r in roots if isinstance(r, Unknown)]
