(* mirage >= 4.9.0 & < 4.12.0 *)

(* The blog as a MirageOS unikernel: the files of the built site (copied into
   htdocs/ by `mage unikernel` before `mirage configure`) are crunched into the
   kernel and served by cohttp on a generic dual-stack network.

   HTTPS as mirage-skeleton's applications/static_website_tls does it: the
   certificate is crunched in too (tls/server.pem and tls/server.key, written
   by `mage unikernel` from the Cert step, with tls/names and tls/hsts), and a
   conduit with TLS serves port 443 while port 80 redirects to it. With
   https: false, tls/ holds no certificate and the kernel serves plain HTTP on
   port 80. This has not been compiled here: no opam repository is reachable
   from the machines this project is built on. *)

open Mirage

let stack = generic_stackv4v6 default_network

(* The site, compiled into the kernel: no block device, nothing read at run
   time. This is Mirage's own [crunch "htdocs"] (lib/devices/kv.ml, the same
   from 4.9.0 to 4.11.1) with one stanza more: its rule's (source_tree htdocs)
   copies only what dune sees, and dune skips every directory whose name
   starts with "." or "_" (.well-known/). dune.htdocs, which `mage unikernel`
   writes next to this file, names the site's directories holding such
   directories so that dune sees them too. *)
let htdocs =
  let packages =
    [
      package ~min:"4.0.0" ~max:"5.0.0" "mirage-kv-mem";
      package ~min:"4.0.0" ~max:"5.0.0" ~build:true "crunch";
    ]
  in
  let connect _ modname _ = code ~pos:__POS__ "%s.connect ()" modname in
  let dune _ =
    [
      Dune.stanza
        {|
(include dune.htdocs)

(rule
  (targets static_htdocs.ml static_htdocs.mli)
  (deps (source_tree htdocs))
  (action
    (run ocaml-crunch -o static_htdocs.ml htdocs)))
|};
    ]
  in
  impl ~packages ~connect ~dune "Static_htdocs" kv_ro

(* The certificate, compiled in the same way (`mage unikernel` writes tls/;
   it holds no hidden directory): a renewed certificate is a new kernel. *)
let tls = crunch "tls"

(* ~tls:true gives a conduit that serves both `TCP and `TLS listeners. *)
let http_srv = cohttp_server @@ conduit_direct ~tls:true stack

let main =
  let packages =
    [
      package "uri";
      package ~min:"1.3.0" "magic-mime";
      package ~min:"1.0.0" "tls-mirage";
      package ~min:"1.0.0" "x509";
    ]
  in
  main ~packages "Unikernel.Make" (kv_ro @-> kv_ro @-> http @-> job)

(* The job's name is the kernel's: dist/blog.<target>, e.g. dist/blog.virtio,
   dist/blog.spt, dist/blog.xen; dist/blog for -t unix. *)
let () = register "blog" [ main $ htdocs $ tls $ http_srv ]
