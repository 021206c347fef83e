// `express4` is an npm alias of express@4 (a devDependency, so both majors are tested). Its API
// matches what the tests use of @types/express (5).
declare module 'express4' {
  import express from 'express'
  export default express
}
