(* mirage >= 4.9.0 & < 4.12.0 *)

(* The blog as a MirageOS unikernel: the files of the built site (copied into
   htdocs/ by `mage unikernel` before `mirage configure`) are crunched into the
   kernel and served over plain HTTP by cohttp on a generic dual-stack network.

   Modelled on mirage-skeleton's applications/static_website_tls, with TLS
   switched off: on EC2 the site sits behind the name in Route 53, and TLS, if
   wanted, belongs in front of it. *)

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

(* ~tls:false gives a plain-HTTP conduit. *)
let http_srv = cohttp_server @@ conduit_direct ~tls:false stack

let main =
  let packages = [ package "uri"; package ~min:"1.3.0" "magic-mime" ] in
  main ~packages "Unikernel.Make" (kv_ro @-> http @-> job)

(* The job's name is the kernel's: dist/blog.<target>, e.g. dist/blog.virtio,
   dist/blog.spt, dist/blog.xen; dist/blog for -t unix. *)
let () = register "blog" [ main $ htdocs $ http_srv ]
