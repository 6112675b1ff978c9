(* mirage >= 4.9.0 *)

(* The blog as a MirageOS unikernel: the files of the built site (copied into
   htdocs/ by `mage unikernel` before `mirage configure`) are crunched into the
   kernel and served over plain HTTP by cohttp on a generic dual-stack network.

   Modelled on mirage-skeleton's applications/static_website_tls, with TLS
   switched off: on EC2 the site sits behind the name in Route 53, and TLS, if
   wanted, belongs in front of it. *)

open Mirage

let stack = generic_stackv4v6 default_network

(* The site, compiled into the kernel: no block device, nothing read at run
   time. *)
let htdocs = crunch "htdocs"

(* ~tls:false gives a plain-HTTP conduit. *)
let http_srv = cohttp_server @@ conduit_direct ~tls:false stack

let main =
  let packages = [ package "uri"; package ~min:"1.3.0" "magic-mime" ] in
  main ~packages "Unikernel.Make" (kv_ro @-> http @-> job)

(* The job's name is the kernel's: dist/blog.<target>, e.g. dist/blog.virtio,
   dist/blog.spt, dist/blog.xen; dist/blog for -t unix. *)
let () = register "blog" [ main $ htdocs $ http_srv ]
