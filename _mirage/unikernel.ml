(* Serve the blog: every file Jekyll wrote, crunched into the kernel.

   - GET and HEAD; anything else is 405 with an Allow header.
   - "/" and "/dir/" serve the directory's index.html; "/dir" redirects to
     "/dir/" (301) so relative links in the page keep working.
   - A missing file serves the site's own 404.html with status 404.
   - Content-Type comes from a small table of the types a Jekyll site uses,
     with charset=utf-8 on text, then magic-mime for anything else. *)

open Lwt.Infix

module K = struct
  open Cmdliner

  let port =
    let doc = Arg.info ~doc:"TCP port to serve HTTP on." [ "port" ] in
    Mirage_runtime.register_arg Arg.(value & opt int 80 doc)
end

let src = Logs.Src.create "blog" ~doc:"Blog HTTP server"

module Log = (val Logs.src_log src : Logs.LOG)

let extension path =
  let base =
    match String.rindex_opt path '/' with
    | Some i -> String.sub path (i + 1) (String.length path - i - 1)
    | None -> path
  in
  match String.rindex_opt base '.' with
  | Some i when i > 0 ->
      String.lowercase_ascii
        (String.sub base (i + 1) (String.length base - i - 1))
  | _ -> ""

let content_type path =
  match extension path with
  | "html" | "htm" -> "text/html; charset=utf-8"
  | "css" -> "text/css; charset=utf-8"
  | "js" | "mjs" -> "text/javascript; charset=utf-8"
  | "json" | "map" -> "application/json"
  | "xml" ->
      if Filename.basename path = "feed.xml" then
        "application/atom+xml; charset=utf-8"
      else "application/xml; charset=utf-8"
  | "atom" -> "application/atom+xml; charset=utf-8"
  | "rss" -> "application/rss+xml; charset=utf-8"
  | "txt" | "md" -> "text/plain; charset=utf-8"
  | "svg" -> "image/svg+xml"
  | "png" -> "image/png"
  | "jpg" | "jpeg" -> "image/jpeg"
  | "gif" -> "image/gif"
  | "webp" -> "image/webp"
  | "avif" -> "image/avif"
  | "ico" -> "image/x-icon"
  | "woff2" -> "font/woff2"
  | "woff" -> "font/woff"
  | "pdf" -> "application/pdf"
  | "wasm" -> "application/wasm"
  | _ -> Magic_mime.lookup ~default:"application/octet-stream" path

module Make
    (Htdocs : Mirage_kv.RO)
    (Certs : Mirage_kv.RO)
    (S : Cohttp_mirage.Server.S) =
struct
  module X509 = Tls_mirage.X509 (Certs)
  let find htdocs path =
    Htdocs.get htdocs (Mirage_kv.Key.v path) >|= function
    | Ok body -> Some body
    | Error _ -> None

  let is_directory htdocs path =
    Htdocs.exists htdocs (Mirage_kv.Key.v path) >|= function
    | Ok (Some `Dictionary) -> true
    | Ok (Some `Value) | Ok None | Error _ -> false

  (* The same headers for GET and HEAD; HEAD sends no body but keeps the
     Content-Length the GET would have had. *)
  let respond ~head ~status ~content_type ?(extra = []) body =
    let headers =
      Cohttp.Header.of_list
        ([
           ("content-type", content_type);
           ("content-length", string_of_int (String.length body));
         ]
        @ extra)
    in
    if head then S.respond ~headers ~status ~body:`Empty ()
    else S.respond_string ~headers ~status ~body ()

  let not_found ~head htdocs =
    find htdocs "404.html" >>= function
    | Some body ->
        respond ~head ~status:`Not_found
          ~content_type:"text/html; charset=utf-8" body
    | None ->
        respond ~head ~status:`Not_found
          ~content_type:"text/plain; charset=utf-8" "Not found\n"

  let redirect ~head location =
    let body = "Moved to " ^ location ^ "\n" in
    respond ~head ~status:`Moved_permanently
      ~content_type:"text/plain; charset=utf-8"
      ~extra:[ ("location", location) ]
      body

  let get ~head htdocs uri =
    let raw = Uri.path uri in
    let path = Uri.pct_decode raw in
    let ends_with_slash =
      path = "" || path.[String.length path - 1] = '/'
    in
    let file = if ends_with_slash then path ^ "index.html" else path in
    find htdocs file >>= function
    | Some body ->
        respond ~head ~status:`OK ~content_type:(content_type file) body
    | None when ends_with_slash -> not_found ~head htdocs
    | None -> (
        is_directory htdocs path >>= function
        | true ->
            let query =
              match Uri.verbatim_query uri with
              | Some q -> "?" ^ q
              | None -> ""
            in
            redirect ~head (raw ^ "/" ^ query)
        | false -> not_found ~head htdocs)

  let dispatch htdocs request =
    let uri = Cohttp.Request.uri request in
    match Cohttp.Request.meth request with
    | `GET -> get ~head:false htdocs uri
    | `HEAD -> get ~head:true htdocs uri
    | _ ->
        let headers =
          Cohttp.Header.of_list [ ("allow", "GET, HEAD"); ("content-length", "0") ]
        in
        S.respond ~headers ~status:`Method_not_allowed ~body:`Empty ()

  let log_request request ((response, _) as r) =
    Log.info (fun f ->
        f "%s %s %d"
          (Cohttp.Code.string_of_method (Cohttp.Request.meth request))
          (Uri.path (Cohttp.Request.uri request))
          (Cohttp.Code.code_of_status (Cohttp.Response.status response)));
    r

  (* What `mage unikernel` wrote beside the certificate: tls/names (the
     domain, then the aliases, one a line) and tls/hsts (max-age seconds). *)
  let read_lines certs name =
    Certs.get certs (Mirage_kv.Key.v name) >|= function
    | Ok s ->
        String.split_on_char '\n' s
        |> List.map String.trim
        |> List.filter (fun l -> l <> "")
    | Error _ -> []

  let host_of request =
    match Cohttp.Header.get (Cohttp.Request.headers request) "host" with
    | None -> ""
    | Some h -> (
        let h = String.lowercase_ascii h in
        match String.index_opt h ':' with
        | Some i -> String.sub h 0 i
        | None -> h)

  let canonical domain request =
    "https://" ^ domain ^ Uri.path_and_query (Cohttp.Request.uri request)

  (* The TLS configuration from the crunched chain and key, or None with
     https off (no tls/server.pem). *)
  let tls_config certs =
    Certs.exists certs (Mirage_kv.Key.v "server.pem") >>= function
    | Ok (Some `Value) -> (
        X509.certificate certs `Default >|= fun cert ->
        match Tls.Config.server ~certificates:(`Single cert) () with
        | Ok c -> Some c
        | Error (`Msg m) -> failwith ("TLS configuration: " ^ m))
    | _ -> Lwt.return None

  let start htdocs certs http =
    let port = K.port () in
    tls_config certs >>= function
    | None ->
        let callback _conn request _body =
          dispatch htdocs request >|= log_request request
        in
        Log.info (fun f -> f "serving the blog over HTTP on port %d" port);
        http (`TCP port) (S.make ~callback ())
    | Some config ->
        read_lines certs "names" >>= fun names ->
        read_lines certs "hsts" >>= fun hsts ->
        let domain, aliases =
          match names with d :: a -> (d, a) | [] -> ("", [])
        in
        let hsts =
          match hsts with
          | s :: _ when s <> "0" -> [ ("strict-transport-security", "max-age=" ^ s) ]
          | _ -> []
        in
        (* 443: the site, aliases redirected to the domain, HSTS on all. *)
        let secure _conn request _body =
          (if List.mem (host_of request) aliases then
             S.respond_redirect ~uri:(Uri.of_string (canonical domain request)) ()
             >|= fun (resp, body) ->
             ( Cohttp.Response.make ~status:`Moved_permanently
                 ~headers:(Cohttp.Header.add_list (Cohttp.Response.headers resp) hsts)
                 (),
               body )
           else
             dispatch htdocs request >|= fun (resp, body) ->
             let headers = Cohttp.Header.add_list (Cohttp.Response.headers resp) hsts in
             ({ resp with Cohttp.Response.headers }, body))
          >|= log_request request
        in
        (* 80: everything moves to HTTPS on the domain, path and query kept. *)
        let plain _conn request _body =
          let location = canonical domain request in
          S.respond ~status:`Moved_permanently
            ~headers:(Cohttp.Header.of_list [ ("location", location); ("content-length", "0") ])
            ~body:`Empty ()
          >|= log_request request
        in
        Log.info (fun f ->
            f "serving %s over HTTPS on 443, port %d redirecting to it" domain port);
        Lwt.join
          [
            http (`TLS (config, `TCP 443)) (S.make ~callback:secure ());
            http (`TCP port) (S.make ~callback:plain ());
          ]
end
