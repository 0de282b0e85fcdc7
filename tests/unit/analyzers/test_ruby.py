"""Ruby: the load path and gem directories from a Debian-style tree, literal requires, boot."""

from __future__ import annotations

from pathlib import Path

from slim.analyzers.elf import ElfAnalyzer
from slim.analyzers.ruby import RubyAnalyzer, RubyState, boot_edges, resolve_feature, ruby_roots
from slim.analyzers.script import ScriptAnalyzer
from slim.model import ROOT, Edge
from tests.unit.analyzers.test_python import ELF, closure, context, write_tree

ARCH = "/usr/lib/x86_64-linux-gnu/ruby/3.1.0"
LIB = "/usr/lib/ruby/3.1.0"
GEMS = "/usr/share/rubygems-integration/all"
SINATRA = f"{GEMS}/gems/sinatra-3.0.5/lib"
RACK = "/var/lib/gems/3.1.0/gems/rack-2.2.4/lib"

APP = """\
require 'sinatra'
# require 'commented_out'
require_relative 'helpers'

get '/report.csv' do
  require 'csv'            # only when the route runs: a shallow probe never loads it
  CSV.generate { |c| c << [1, 2] }
end

plugin = ENV['PLUGIN']
require plugin
"""

FILES: dict[str, str | bytes] = {
    "/usr/bin/ruby3.1": ELF,
    f"{ARCH}/rbconfig.rb": 'CONFIG["ruby_version"] = "3.1.0"\n',
    f"{ARCH}/enc/encdb.so": ELF,
    f"{ARCH}/enc/utf_16le.so": ELF,
    f"{ARCH}/monitor.so": ELF,
    f"{LIB}/monitor.rb": "require 'monitor.so'\n",
    f"{LIB}/did_you_mean.rb": "require_relative 'did_you_mean/spell_checker'\n",
    f"{LIB}/did_you_mean/spell_checker.rb": "",
    f"{LIB}/csv.rb": "require 'forwardable'\nrequire_relative 'csv/parser'\n",
    f"{LIB}/csv/parser.rb": "require 'strscan'\n",
    f"{LIB}/forwardable.rb": "",
    f"{ARCH}/strscan.so": ELF,
    f"{LIB}/unused.rb": "",
    "/usr/lib/ruby/vendor_ruby/rubygems.rb": "require 'rubygems/specification'\n",
    "/usr/lib/ruby/vendor_ruby/rubygems/specification.rb": "",
    f"{GEMS}/specifications/sinatra-3.0.5.gemspec": 's.require_paths = ["lib".freeze]\n',
    f"{SINATRA}/sinatra.rb": "require 'sinatra/base'\n",
    f"{SINATRA}/sinatra/base.rb": "require 'rack'\nrequire 'time'\n",
    f"{SINATRA}/sinatra/images/404.png": b"\x89PNG",
    "/var/lib/gems/3.1.0/specifications/rack-2.2.4.gemspec": "s.name = 'rack'\n",
    f"{RACK}/rack.rb": "module Rack\n  autoload :Builder, 'rack/builder'\n  autoload :Missing, 'rack/missing'\nend\n",
    f"{RACK}/rack/builder.rb": "",
    f"{LIB}/time.rb": "require 'date'\n",
    f"{LIB}/date.rb": "",
    "/app/app.rb": APP,
    "/app/helpers.rb": "",
    "/app/views/index.erb": "<%= 1 %>",
}
LINKS = {"/usr/bin/ruby": "ruby3.1"}
CONFIG = {"Entrypoint": ["ruby", "/app/app.rb"], "WorkingDir": "/app",
          "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}


def test_load_path_and_gems(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        env = ctx.service(RubyState).env()
        assert env is not None and env.version == "3.1.0" and env.archdir == ARCH
        assert env.load_path.index("/usr/lib/ruby/vendor_ruby") < env.load_path.index(LIB) < env.load_path.index(ARCH)
        assert set(env.gem_dirs) == {GEMS, "/var/lib/gems/3.1.0"}
        assert SINATRA in env.gem_lib_dirs and RACK in env.gem_lib_dirs
        assert resolve_feature(ctx, env, "csv") == f"{LIB}/csv.rb"
        assert resolve_feature(ctx, env, "strscan") == f"{ARCH}/strscan.so"
        assert resolve_feature(ctx, env, "rack") == f"{RACK}/rack.rb"  # through the gem
        assert resolve_feature(ctx, env, "nope") is None


def test_closure_of_a_sinatra_app(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        # as slim.entrypoint does: the program itself, then what the analyzer makes of argv
        roots = [Edge(ROOT, "/usr/bin/ruby", "entrypoint", "argv[0]"),
                 *ruby_roots(ctx, list(ctx.config.argv))]
        keep, _, unknowns = closure(ctx, roots, [RubyAnalyzer, ScriptAnalyzer, ElfAnalyzer])
    # a require inside a route handler is kept although no shallow probe would load it
    assert {f"{LIB}/csv.rb", f"{LIB}/csv/parser.rb", f"{ARCH}/strscan.so", f"{LIB}/forwardable.rb"} <= keep
    assert {f"{SINATRA}/sinatra.rb", f"{SINATRA}/sinatra/base.rb", f"{RACK}/rack.rb",
            f"{RACK}/rack/builder.rb", f"{LIB}/time.rb", f"{LIB}/date.rb", "/app/helpers.rb"} <= keep
    assert f"{SINATRA}/sinatra/images/404.png" in keep  # data beside the gem's code
    # the interpreter's boot set
    assert {f"{ARCH}/rbconfig.rb", f"{ARCH}/enc/utf_16le.so", "/usr/lib/ruby/vendor_ruby/rubygems.rb",
            f"{LIB}/did_you_mean/spell_checker.rb", f"{GEMS}/specifications/sinatra-3.0.5.gemspec",
            f"{LIB}/monitor.rb", f"{ARCH}/monitor.so"} <= keep
    assert f"{LIB}/unused.rb" not in keep
    reasons = {u.reason for u in unknowns}
    assert any("computed name (plugin)" in r for r in reasons)
    assert not any("commented_out" in r or "rack/missing" in r for r in reasons)


def test_roots_ignore_other_programs_and_read_options(tmp_path: Path) -> None:
    write_tree(tmp_path, FILES, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        assert ruby_roots(ctx, ["/usr/bin/python3", "x.py"]) == []
        roots = ruby_roots(ctx, ["ruby", "-I", "/app", "-rhelpers", "app.rb"])
        dsts = {e.dst for e in roots if hasattr(e, "dst")}
        assert {"/app/helpers.rb", "/app/app.rb"} <= dsts


def test_gem_extensions_builtin_features_and_computed_requires(tmp_path: Path) -> None:
    """puma's puma_http11.so lives in the gem directory's extensions/; `require 'thread'` is
    provided by the interpreter; `requirements.size` is no require."""
    puma = "/usr/lib/x86_64-linux-gnu/rubygems-integration/3.1.0"
    ext = f"{puma}/extensions/x86_64-linux/3.1.0/puma-5.6.5"
    files = {**FILES,
             f"{puma}/specifications/puma-5.6.5.gemspec": 's.require_paths = ["lib".freeze]\n',
             f"{puma}/gems/puma-5.6.5/lib/puma.rb": (
                 "require 'thread'\nrequire 'puma/puma_http11'\nx = requirements.size\n"
                 "if requirements.empty?\n  require name\nend\n"),
             f"{ext}/puma/puma_http11.so": ELF,
             f"{ext}/gem.build_complete": ""}
    write_tree(tmp_path, files, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        env = ctx.service(RubyState).env()
        assert env is not None and ext in env.gem_lib_dirs
        # without the marker RubyGems ignores the gem ("its extensions are not built")
        assert f"{ext}/gem.build_complete" in {e.dst for e in boot_edges(ctx, env)}
        items = RubyAnalyzer(ctx).analyze(ctx.fs.stat(f"{puma}/gems/puma-5.6.5/lib/puma.rb"))  # type: ignore[arg-type]
    assert f"{ext}/puma/puma_http11.so" in {e.dst for e in items if isinstance(e, Edge)}
    assert [u.reason for u in items if not isinstance(u, Edge)] == ["line 5: require of a computed name (name)"]


def test_expand_path_loads_interpolated_requires_and_rubygems_followed(tmp_path: Path) -> None:
    vendor = "/usr/lib/ruby/vendor_ruby"
    files = {**FILES,
             # RubyGems 3.3's own layout: require_relative, autoload with File.expand_path,
             # and an interpolated require of its defaults
             f"{vendor}/rubygems.rb": (
                 "require_relative 'rubygems/specification'\n"
                 "autoload :ConfigFile, File.expand_path('rubygems/config_file', __dir__)\n"
                 "require \"rubygems/defaults/#{RUBY_ENGINE}\"\n"),
             f"{vendor}/rubygems/config_file.rb": "",
             f"{vendor}/rubygems/defaults/ruby.rb": "",
             f"{vendor}/rubygems/defaults/jruby.rb": "",
             f"{vendor}/rubygems/ssl_certs/rubygems.org/GlobalSign.pem": "-----BEGIN",
             f"{vendor}/rubygems/commands/install_command.rb": "",  # the gem CLI's, not required
             "/app/app.rb": ("require File.expand_path('../lib/helper', __FILE__)\n"
                             "require File.expand_path('lib/other', File.dirname(__FILE__))\n"
                             "require \"#{ENV['X']}\"\n"),
             "/app/lib/helper.rb": "", "/app/lib/other.rb": ""}
    write_tree(tmp_path, files, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        roots = [Edge(ROOT, "/usr/bin/ruby", "entrypoint", "argv[0]"), *ruby_roots(ctx, list(ctx.config.argv))]
        keep, _, unknowns = closure(ctx, roots, [RubyAnalyzer, ScriptAnalyzer, ElfAnalyzer])
    assert {"/app/lib/helper.rb", "/app/lib/other.rb", f"{vendor}/rubygems/config_file.rb",
            f"{vendor}/rubygems/defaults/ruby.rb", f"{vendor}/rubygems/defaults/jruby.rb",
            f"{vendor}/rubygems/ssl_certs/rubygems.org/GlobalSign.pem"} <= keep
    assert f"{vendor}/rubygems/commands/install_command.rb" not in keep
    reasons = {u.reason for u in unknowns}
    assert any("rubygems/defaults/#{" in r and "2 matching files kept" in r for r in reasons)
    assert any("a computed name; nothing kept" in r for r in reasons)


def test_requires_follow_a_line_start_space_semicolon_or_parenthesis(tmp_path: Path) -> None:
    """A keyword counts after the start of a line, white space, `;` or `(`, never inside a
    word (`xrequire`, `preload`); evidence names the keyword's own line."""
    files = {**FILES, "/app/app.rb": ("x = 1\nxrequire 'nope'\nrequire 'csv'\nputs 1;require 'date'\n"
                                      "(require 'forwardable')\npreload 'nope2'\nrequire name\n")}
    write_tree(tmp_path, files, LINKS, CONFIG)
    with context(tmp_path) as ctx:
        items = RubyAnalyzer(ctx).analyze(ctx.fs.stat("/app/app.rb"))  # type: ignore[arg-type]
    edges = {e.dst: e.evidence for e in items if isinstance(e, Edge)}
    assert set(edges) == {f"{LIB}/csv.rb", f"{LIB}/date.rb", f"{LIB}/forwardable.rb"}
    assert edges[f"{LIB}/csv.rb"] == "/app/app.rb:3: require 'csv'"
    assert edges[f"{LIB}/forwardable.rb"] == "/app/app.rb:5: require 'forwardable'"
    assert [u.reason for u in items if not isinstance(u, Edge)] == ["line 7: require of a computed name (name)"]
