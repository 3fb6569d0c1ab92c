declare module 'luamin' {
  export function minify(code: string): string;
}
