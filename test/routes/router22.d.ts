// `router22` is an npm alias of router@2.2.0 (a devDependency): the last `router` release whose
// layers keep no declared path at all, so route templates are tested on it too.
declare module 'router22' {
  import type { Router } from 'express'

  const createRouter: (options?: { caseSensitive?: boolean; strict?: boolean }) => Router
  export default createRouter
}
