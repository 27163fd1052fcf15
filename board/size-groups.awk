# Groups of the symbol table "size<TAB>type<TAB>name" that board/size-report.sh
# writes: each symbol counts once, in the first group whose pattern its name
# matches, so the order matters (the Noise primitives before `edge_gw::`, the
# agent before the rest of `edge_gw`). board/README.md ("What remains")
# is this table for mipsel.
BEGIN {
  FS = "\t"
  n = 0
  g[++n] = "Noise handshake, AEAD, randomness";           p[n] = "snow::|sha2::|curve25519|chacha20|poly1305|cipher::|aead::|proto::crypto|getrandom|zeroize|subtle::"
  g[++n] = "deflate/inflate (miniz_oxide, proto::compress)"; p[n] = "miniz_oxide|proto::compress"
  g[++n] = "CLI: main, cli::*, lexopt, help text users";  p[n] = "^edge_gw::main$|edge_gw::main::|edge_gw::cli::|lexopt"
  g[++n] = "agent: src/agent (also its futures inside executor/task wrappers)"; p[n] = "edge_gw::agent"
  g[++n] = "session + wire: src/session, src/proto, postcard, serde"; p[n] = "edge_gw::session|edge_gw::proto|postcard|serde"
  g[++n] = "other edge_gw: logger, log sinks, sd_notify, keys, os"; p[n] = "edge_gw::"
  g[++n] = "smol runtime: executor, task, reactor, channel, signals"; p[n] = "async_executor|async_task|async_io|concurrent_queue|event_listener|async_channel|polling::|parking::|futures_lite|async_signal|signal_hook|fastrand|slab::|rustix::|piper::"
  g[++n] = "float formatting/parsing (Rust) + soft-float helpers"; p[n] = "flt2dec|dec2flt|fmt::float|<f(32|64) as core::fmt|__(add|sub|mul|div|extend|trunc|fix|float|cmp|eq|ne|lt|le|gt|ge|unord)[sdt]f|__(add|sub|mul|div)df3|__fix|__float"
  g[++n] = "core::fmt (formatting machinery)";            p[n] = "core::fmt"
  g[++n] = "musl resolver (getaddrinfo, resolv.conf, DNS, qsort)"; p[n] = "getaddrinfo|freeaddrinfo|__lookup|__res_|__dns|__dn_|dn_expand|__get_resolv_conf|res_mkquery|res_send|__rtnetlink|__netlink|if_nameindex|if_nametoindex|qsort|sort\\.pdq|wrapper_cmp|sift|trinkle|__inet_aton|inet_pton|inet_aton|__lookup_serv|__lookup_ipliteral|name_from|policyof|labelof|scopeof|prefixmatch|addrcmp|__fopen_rb_ca|__fclose_ca|getnameinfo|gethostby|is_valid_hostname|__h_errno|__gai|gai_strerror"
  g[++n] = "musl printf and stdio internals (printf: see board/libc-shim)"; p[n] = "mbsrtowcs|wcrtomb|mbrtowc|wctomb|printf|pop_arg|fmt_fp|fmt_u|fmt_o|fmt_x|getint|out$|pad$|__towrite|__fwritex|__stdio|vsn|sn_write|xdigits|states$"
  g[++n] = "C: process spawning (fork, posix_spawn, exec)"; p[n] = "posix_spawn|^child$|execvpe|^fork$|^_Fork$|execve"
  g[++n] = "zig libc malloc (SmpAllocator)";              p[n] = "SmpAllocator|heap\\.|malloc|calloc|realloc|free$"
  g[++n] = "std";                                         p[n] = "^<?std::|^<&?std::|std::"
  g[++n] = "alloc";                                       p[n] = "alloc::|hashbrown"
  g[++n] = "core (other)";                                p[n] = "core::|compiler_builtins"
  g[++n] = "C: rest of musl, zig libc, compiler-rt";      p[n] = "."
}
$2 ~ /^[bB]$/ { next }
{
  for (i = 1; i <= n; i++) if ($3 ~ p[i]) { sum[i] += $1; break }
  total += $1
}
END {
  for (i = 1; i <= n; i++) printf "%9d  %s\n", sum[i], g[i]
  printf "%9d  all sized symbols\n", total
}
